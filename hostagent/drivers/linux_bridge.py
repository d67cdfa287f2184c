"""Linux bridges for L2 networks, through ``ip link`` (needs root)."""
from __future__ import annotations

from hostagent.drivers.base import BridgeRequest, DriverError
from hostagent.drivers.shell import CommandFailed, Runner, run

MAX_IFNAME = 15


class LinuxBridges:
    def __init__(self, runner: Runner = run) -> None:
        self._run = runner

    def exists(self, name: str) -> bool:
        try:
            self._run(["ip", "link", "show", "dev", name])
        except CommandFailed:
            return False
        return True

    def setup(self, request: BridgeRequest) -> str:
        """Ensure the bridge exists and is up, with the (VLAN sub-)interface attached."""
        check_interface_name(request.bridge)
        if not self.exists(request.bridge):
            self._run(["ip", "link", "add", "name", request.bridge, "type", "bridge"])
        self._run(["ip", "link", "set", "dev", request.bridge, "up"])
        if request.physical_interface is None:
            return request.bridge
        port = request.physical_interface
        if request.vlan is not None:
            port = f"{request.physical_interface}.{request.vlan}"
            check_interface_name(port)
            if not self.exists(port):
                try:
                    self._run(["ip", "link", "add", "link", request.physical_interface, "name",
                               port, "type", "vlan", "id", str(request.vlan)])
                except CommandFailed as exc:
                    raise DriverError(f"cannot create VLAN interface {port}: {exc} (is the "
                                      "8021q kernel module available?)") from exc
        self._run(["ip", "link", "set", "dev", port, "master", request.bridge])
        self._run(["ip", "link", "set", "dev", port, "up"])
        return request.bridge


def check_interface_name(name: str) -> None:
    if not name or len(name) > MAX_IFNAME or "/" in name or " " in name:
        raise DriverError(f"invalid interface name {name!r} (1-{MAX_IFNAME} characters, "
                          "no '/' or spaces)")
