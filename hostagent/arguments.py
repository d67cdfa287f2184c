"""Reading command args from the wire into typed values and driver specs, with clear errors."""
from __future__ import annotations

import re
from collections.abc import Callable
from ipaddress import IPv4Address, IPv4Interface
from typing import Any, TypeVar
from urllib.parse import urlsplit

from hostagent.drivers.base import (
    IMAGE_URL_SCHEMES,
    BridgeRequest,
    DhcpSpec,
    ImageSource,
    NicSpec,
    VmSpec,
    VolumeRequest,
    VolumeSpec,
)

_MISSING = object()
T = TypeVar("T")
# What may end up in a DHCP server's files and names: no separators, no spaces, no newlines.
_UUID = re.compile(r"[0-9A-Za-z-]{1,64}")
_MAC = re.compile(r"[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}")
_HOST_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOSTNAME = re.compile(_HOST_LABEL)
_DOMAIN = re.compile(rf"{_HOST_LABEL}(\.{_HOST_LABEL})*")


class ArgumentError(ValueError):
    """The command's args do not say what the command needs."""


def text(args: dict[str, Any], key: str, default: Any = _MISSING) -> Any:
    return _typed(args, key, str, "a string", default)


def integer(args: dict[str, Any], key: str, default: Any = _MISSING) -> Any:
    value = _typed(args, key, int, "an integer", default)
    if isinstance(value, bool):
        raise ArgumentError(f"'{key}' must be an integer")
    return value


def number(args: dict[str, Any], key: str, default: Any = _MISSING) -> Any:
    value = _typed(args, key, int | float, "a number", default)
    if isinstance(value, bool):
        raise ArgumentError(f"'{key}' must be a number")
    return value


def flag(args: dict[str, Any], key: str, default: bool = False) -> bool:
    return _typed(args, key, bool, "true or false", default)


def vm_spec(args: dict[str, Any]) -> VmSpec:
    cpu_num, memory = integer(args, "cpuNum"), integer(args, "memorySize")
    if cpu_num < 1 or memory < 1:
        raise ArgumentError("'cpuNum' and 'memorySize' must be positive")
    return VmSpec(
        uuid=text(args, "uuid"), name=text(args, "name"), cpu_num=cpu_num, memory_size=memory,
        volumes=tuple(each(args, "volumes", _volume)), nics=tuple(each(args, "nics", _nic)),
        kernel=text(args, "kernel", None), initrd=text(args, "initrd", None),
        cmdline=text(args, "cmdline", None))


def volume_request(args: dict[str, Any]) -> VolumeRequest:
    size = integer(args, "size", None)
    backing = text(args, "backingFile", None)
    image = nested(args, "image", _image_source)
    if size is None and backing is None and image is None:
        raise ArgumentError("missing argument 'size' (only a volume with a backingFile or "
                            "an image may omit it)")
    if size is not None and size < 0:
        raise ArgumentError("'size' must not be negative")
    if backing is not None and image is not None:
        raise ArgumentError("a volume has a 'backingFile' or an 'image', not both")
    return VolumeRequest(path=text(args, "path"), size=size,
                         format=text(args, "format", "qcow2"), backing_file=backing,
                         image=image)


def _image_source(item: dict[str, Any]) -> ImageSource:
    url = text(item, "url")
    if urlsplit(url).scheme not in IMAGE_URL_SCHEMES:
        raise ArgumentError(f"'url' must be {', '.join(s + '://' for s in IMAGE_URL_SCHEMES)}"
                            f", not {url!r}")
    return ImageSource(uuid=text(item, "uuid"), url=url, cache_path=text(item, "cachePath"),
                       format=text(item, "format", "qcow2"))


def bridge_request(args: dict[str, Any]) -> BridgeRequest:
    vlan = integer(args, "vlan", None)
    if vlan is not None and not 1 <= vlan <= 4094:
        raise ArgumentError("'vlan' must be between 1 and 4094")
    return BridgeRequest(bridge=text(args, "bridge"),
                         physical_interface=text(args, "physicalInterface", None), vlan=vlan)


def _volume(item: dict[str, Any]) -> VolumeSpec:
    return VolumeSpec(uuid=text(item, "uuid"), path=text(item, "path"),
                      format=text(item, "format", "qcow2"), device_id=integer(item, "deviceId"))


def _nic(item: dict[str, Any]) -> NicSpec:
    vlan = integer(item, "vlan", None)
    if vlan is not None and not 1 <= vlan <= 4094:
        raise ArgumentError("'vlan' must be between 1 and 4094")
    dhcp = nested(item, "dhcp", _dhcp)
    ip = text(item, "ip", None)
    if dhcp is not None:
        _check_dhcp_nic(text(item, "mac"), ip, dhcp)
    return NicSpec(uuid=text(item, "uuid"), mac=text(item, "mac"), bridge=text(item, "bridge"),
                   device_id=integer(item, "deviceId"),
                   physical_interface=text(item, "physicalInterface", None), vlan=vlan,
                   ip=ip, dhcp=dhcp)


def _dhcp(item: dict[str, Any]) -> DhcpSpec:
    prefix = integer(item, "prefixLength")
    if not 1 <= prefix <= 30:
        raise ArgumentError("'prefixLength' must be between 1 and 30")
    dns = item.get("dns") or []
    if not isinstance(dns, list):
        raise ArgumentError("'dns' must be a list of IPv4 addresses")
    return DhcpSpec(
        l3_network_uuid=_matching(item, "l3NetworkUuid", _UUID, "a uuid"),
        server_ip=_ipv4(item, "serverIp"), prefix_length=prefix,
        gateway=_ipv4(item, "gateway", None),
        dns=tuple(_ipv4({"dns": address}, "dns") for address in dns),
        dns_domain=_matching(item, "dnsDomain", _DOMAIN, "a domain name", None),
        hostname=_matching(item, "hostname", _HOSTNAME, "a host name (letters, digits, '-')",
                           None))


def _check_dhcp_nic(mac: str, ip: str | None, dhcp: DhcpSpec) -> None:
    if not _MAC.fullmatch(mac):
        raise ArgumentError(f"'mac' must be six hex pairs separated by ':', not {mac!r}")
    if ip is None:
        raise ArgumentError("a NIC with 'dhcp' needs its 'ip' (the address DHCP hands out)")
    address = IPv4Address(_ipv4({"ip": ip}, "ip"))
    network = IPv4Interface(f"{dhcp.server_ip}/{dhcp.prefix_length}").network
    if address not in network or address == IPv4Address(dhcp.server_ip):
        raise ArgumentError(f"'ip' {ip} is not an address the DHCP server at "
                            f"{dhcp.server_ip}/{dhcp.prefix_length} can hand out")


def nested(args: dict[str, Any], key: str, read: Callable[[dict[str, Any]], T]) -> T | None:
    """The object at ``key`` read by ``read``, or None when absent."""
    item = args.get(key)
    if item is None:
        return None
    if not isinstance(item, dict):
        raise ArgumentError(f"'{key}' must be an object")
    try:
        return read(item)
    except ArgumentError as exc:
        raise ArgumentError(f"{key}: {exc}") from exc


def each(args: dict[str, Any], key: str, read: Callable[[dict[str, Any]], T]) -> list[T]:
    items = args.get(key) or []
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise ArgumentError(f"'{key}' must be a list of objects")
    read_items = []
    for index, item in enumerate(items):
        try:
            read_items.append(read(item))
        except ArgumentError as exc:
            raise ArgumentError(f"{key}[{index}]: {exc}") from exc
    return read_items


def texts(args: dict[str, Any], key: str) -> list[str]:
    values = args.get(key)
    if not isinstance(values, list) or not all(isinstance(v, str) and v for v in values):
        raise ArgumentError(f"'{key}' must be a list of non-empty strings")
    return values


def _ipv4(args: dict[str, Any], key: str, default: Any = _MISSING) -> Any:
    value = text(args, key, default)
    if value is None:
        return None
    try:
        return str(IPv4Address(value))
    except ValueError:
        raise ArgumentError(f"'{key}' must be an IPv4 address, not {value!r}") from None


def _matching(args: dict[str, Any], key: str, pattern: re.Pattern[str], described: str,
              default: Any = _MISSING) -> Any:
    value = text(args, key, default)
    if value is not None and not pattern.fullmatch(value):
        raise ArgumentError(f"'{key}' must be {described}, not {value!r}")
    return value


def _typed(args: dict[str, Any], key: str, kind: Any, described: str, default: Any) -> Any:
    value = args.get(key)
    if value is None:
        if default is _MISSING:
            raise ArgumentError(f"missing argument '{key}'")
        return default
    if not isinstance(value, kind):
        raise ArgumentError(f"'{key}' must be {described}, not {type(value).__name__}")
    return value
