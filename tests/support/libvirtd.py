"""A private libvirtd with the real qemu driver, for tests that must act on a domain from
outside the agent (``virsh destroy``-style), the way an operator or a crash would.

Nothing global changes. libvirtd runs as root (only then is the driver ``qemu:///system``,
and only with qemu as root does the driver skip re-probing qemu, ~31 s, on every call), so it
insists on /etc/libvirt, /var/lib/libvirt, /run/libvirt ... Here it runs in its own mount
namespace (``unshare -m``) in which /etc, /var and /run are overlays whose writable layer is
a directory under this fixture's temporary directory: its qemu.conf, a ``libvirt-qemu`` user
(the compiled-in default user must exist before qemu.conf may override it), its state, logs
and qemu capability cache all land there and vanish with it. Its sockets are in that
temporary directory too (``unix_sock_dir``); clients reach it with
``qemu:///system?socket=…``. qemu's output goes to files (``stdio_handler = "file"``), so no
virtlogd is needed, and ``cgroup_controllers = []`` keeps it out of the machine's cgroups.
The domains it runs are qemu processes in that namespace: they are destroyed, and any that
outlive libvirtd killed, when the fixture ends.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

LIBVIRTD = "/usr/sbin/libvirtd"
QEMU = "/usr/bin/qemu-system-x86_64"
UNSHARE = "/usr/bin/unshare"
START_TIMEOUT = 60  # the first call probes qemu's capabilities: ~7 s on a 2-core machine

QEMU_CONF = """\
user = "root"
group = "root"
cgroup_controllers = [ ]
stdio_handler = "file"
"""
LIBVIRTD_CONF = """\
unix_sock_dir = "{sock_dir}"
auth_unix_rw = "none"
auth_unix_ro = "none"
listen_tls = 0
listen_tcp = 0
"""
# Runs as root inside the new mount namespace, then becomes libvirtd (same pid).
NAMESPACE_SETUP = """\
set -e
for d in etc var run; do
    mount -t overlay overlay -o "lowerdir=/$d,upperdir=$ROOT/$d-up,workdir=$ROOT/$d-work" "/$d"
done
getent group libvirt-qemu >/dev/null || echo 'libvirt-qemu:x:64055:' >> /etc/group
getent passwd libvirt-qemu >/dev/null || \
    echo 'libvirt-qemu:x:64055:64055::/var/lib/libvirt:/usr/sbin/nologin' >> /etc/passwd
exec "$LIBVIRTD" -f "$ROOT/libvirtd.conf"
"""


class LibvirtdUnavailable(Exception):
    """libvirtd with the qemu driver cannot run here; the message says why."""


class Libvirtd:
    """``start()`` it, connect to ``uri``, ``stop()`` it (also after a failure)."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="aerie-libvirtd-"))  # short: socket paths
        self.socket = self.root / "sock" / "libvirt-sock"
        self.uri = f"qemu:///system?socket={self.socket}"
        self.log = self.root / "libvirtd.log"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        problem = self._missing()
        if problem:
            raise LibvirtdUnavailable(problem)
        import libvirt

        libvirt.registerErrorHandler(lambda _ctx, _err: None, None)  # errors raise anyway
        (self.root / "sock").mkdir()
        for layer in ("etc", "var", "run"):
            (self.root / f"{layer}-up").mkdir()
            (self.root / f"{layer}-work").mkdir()
        (self.root / "etc-up" / "libvirt").mkdir()
        (self.root / "etc-up" / "libvirt" / "qemu.conf").write_text(QEMU_CONF)
        (self.root / "libvirtd.conf").write_text(
            LIBVIRTD_CONF.format(sock_dir=self.root / "sock"))
        self.process = subprocess.Popen(
            [UNSHARE, "--mount", "--propagation", "private", "sh", "-c", NAMESPACE_SETUP],
            stdout=self.log.open("w"), stderr=subprocess.STDOUT,
            env={**os.environ, "ROOT": str(self.root), "LIBVIRTD": LIBVIRTD})
        deadline = time.monotonic() + START_TIMEOUT
        while not self.socket.exists():
            if self.process.poll() is not None:
                raise LibvirtdUnavailable(f"libvirtd exited: {self.log_tail()}")
            if time.monotonic() > deadline:
                raise LibvirtdUnavailable(f"libvirtd made no socket: {self.log_tail()}")
            time.sleep(0.05)
        while True:  # the socket may exist a moment before libvirtd listens on it
            try:
                conn = libvirt.open(self.uri)
                break
            except libvirt.libvirtError as exc:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise LibvirtdUnavailable(f"libvirtd does not answer: {exc}; "
                                              f"{self.log_tail()}") from exc
                time.sleep(0.1)
        try:
            conn.getInfo()  # waits for the qemu driver to probe qemu, once
            conn.getVersion()
        except libvirt.libvirtError as exc:
            raise LibvirtdUnavailable(f"libvirt's qemu driver does not work: {exc}; "
                                      f"{self.log_tail()}") from exc
        finally:
            conn.close()

    def connect(self):
        import libvirt

        return libvirt.open(self.uri)

    def stop(self) -> None:
        """Destroy every domain, stop libvirtd, kill stray qemus, remove every file."""
        if self.process is not None and self.process.poll() is None:
            try:
                self._destroy_domains()
            finally:
                self.process.send_signal(signal.SIGTERM)
                try:
                    self.process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait()
        self._kill_stray_qemus()
        shutil.rmtree(self.root, ignore_errors=True)

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text().splitlines()[-lines:])
        except OSError:
            return ""

    @staticmethod
    def _missing() -> str | None:
        if os.geteuid() != 0:
            return "libvirtd's qemu:///system driver needs root"
        for path, package in ((LIBVIRTD, "libvirt-daemon"), (QEMU, "qemu-system-x86"),
                              (UNSHARE, "util-linux")):
            if not os.access(path, os.X_OK):
                return f"{path} is missing (apt package {package}; scripts/bootstrap installs it)"
        try:
            import libvirt  # noqa: F401
        except ImportError:
            return "libvirt-python is not installed (make test installs it)"
        return None

    def _destroy_domains(self) -> None:
        import libvirt

        try:
            conn = libvirt.open(self.uri)
        except libvirt.libvirtError:
            return
        try:
            for domain in conn.listAllDomains(0):
                try:
                    if domain.isActive():
                        domain.destroy()
                    domain.undefine()
                except libvirt.libvirtError:
                    pass  # the qemu is killed below if it survived
        finally:
            conn.close()

    def _kill_stray_qemus(self) -> None:
        """qemu processes libvirtd left (it leaves domains running when it stops)."""
        for pidfile in (self.root / "run-up" / "libvirt" / "qemu").glob("*.pid"):
            try:
                pid = int(pidfile.read_text().strip())
                if "qemu" in Path(f"/proc/{pid}/cmdline").read_text():
                    os.kill(pid, signal.SIGKILL)
            except (OSError, ValueError):
                continue
