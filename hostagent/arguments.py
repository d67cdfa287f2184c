"""Reading command args from the wire into typed values and driver specs, with clear errors."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from hostagent.drivers.base import BridgeRequest, NicSpec, VmSpec, VolumeRequest, VolumeSpec

_MISSING = object()
T = TypeVar("T")


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
    if size is None and backing is None:
        raise ArgumentError("missing argument 'size' (only a volume with a backingFile "
                            "may omit it)")
    if size is not None and size < 0:
        raise ArgumentError("'size' must not be negative")
    return VolumeRequest(path=text(args, "path"), size=size,
                         format=text(args, "format", "qcow2"), backing_file=backing)


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
    return NicSpec(uuid=text(item, "uuid"), mac=text(item, "mac"), bridge=text(item, "bridge"),
                   device_id=integer(item, "deviceId"),
                   physical_interface=text(item, "physicalInterface", None), vlan=vlan)


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


def _typed(args: dict[str, Any], key: str, kind: Any, described: str, default: Any) -> Any:
    value = args.get(key)
    if value is None:
        if default is _MISSING:
            raise ArgumentError(f"missing argument '{key}'")
        return default
    if not isinstance(value, kind):
        raise ArgumentError(f"'{key}' must be {described}, not {type(value).__name__}")
    return value
