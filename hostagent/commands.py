"""What each command does: its name, the args it reads, the driver call, the result it gives."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hostagent import arguments
from hostagent.drivers.base import DEFAULT_STOP_TIMEOUT, Driver, VmSpec, VolumeInfo
from hostagent.protocol import CommandName

Handler = Callable[[Driver, dict[str, Any]], dict[str, Any]]


def _facts(driver: Driver, args: dict[str, Any]) -> dict[str, Any]:
    return dict(driver.facts())


def _ping(driver: Driver, args: dict[str, Any]) -> dict[str, Any]:
    return {}


def _vm_create(driver: Driver, args: dict[str, Any]) -> dict[str, Any]:
    spec = arguments.vm_spec(args)
    _bridges_for(driver, spec)
    return {"state": driver.create_vm(spec, start=arguments.flag(args, "start", True)).value}


def _vm_start(driver: Driver, args: dict[str, Any]) -> dict[str, Any]:
    """With the VM's whole spec, (re)defines it first: a host that lost the domain (rebuilt,
    or undefined by hand) can still start it; with the uuid alone, starts what is defined."""
    if "cpuNum" not in args:
        return {"state": driver.start_vm(arguments.text(args, "uuid")).value}
    spec = arguments.vm_spec(args)
    _bridges_for(driver, spec)
    return {"state": driver.create_vm(spec, start=True).value}


def _bridges_for(driver: Driver, spec: VmSpec) -> None:
    for request in dict.fromkeys(nic.bridge_request for nic in spec.nics):
        if request is not None:
            driver.setup_bridge(request)


def _vm_stop(driver: Driver, args: dict[str, Any]) -> dict[str, Any]:
    timeout = arguments.number(args, "timeoutSeconds", DEFAULT_STOP_TIMEOUT)
    state = driver.stop_vm(arguments.text(args, "uuid"), force=arguments.flag(args, "force"),
                           timeout=float(timeout))
    return {"state": state.value}


def _vm_reboot(driver: Driver, args: dict[str, Any]) -> dict[str, Any]:
    return {"state": driver.reboot_vm(arguments.text(args, "uuid")).value}


def _vm_destroy(driver: Driver, args: dict[str, Any]) -> dict[str, Any]:
    driver.destroy_vm(arguments.text(args, "uuid"))
    return {}


def _vm_sync(driver: Driver, args: dict[str, Any]) -> dict[str, Any]:
    return {"vms": driver.list_vms()}


def _volume_create(driver: Driver, args: dict[str, Any]) -> dict[str, Any]:
    return _created(driver.create_volume(arguments.volume_request(args)))


def _created(info: VolumeInfo) -> dict[str, Any]:
    result: dict[str, Any] = {"path": info.path, "actualSize": info.actual_size}
    if info.virtual_size is not None:
        result["size"] = info.virtual_size
    if info.image_size is not None:
        result["imageSize"] = info.image_size
    return result


def _volume_delete(driver: Driver, args: dict[str, Any]) -> dict[str, Any]:
    driver.delete_volume(arguments.text(args, "path"))
    return {}


def _volumes_create(driver: Driver, args: dict[str, Any]) -> dict[str, Any]:
    requests = arguments.each(args, "volumes", arguments.volume_request)
    return {"volumes": [_created(driver.create_volume(request)) for request in requests]}


def _volumes_delete(driver: Driver, args: dict[str, Any]) -> dict[str, Any]:
    """The files, then (if named) the folder that held them, if nothing else is left in it."""
    for path in arguments.texts(args, "paths"):
        driver.delete_volume(path)
    directory = arguments.text(args, "directory", None)
    if directory is not None:
        driver.delete_empty_directory(directory)
    return {}


def _bridge_setup(driver: Driver, args: dict[str, Any]) -> dict[str, Any]:
    return {"bridge": driver.setup_bridge(arguments.bridge_request(args))}


HANDLERS: dict[str, Handler] = {
    CommandName.CONNECT: _facts,
    CommandName.PING: _ping,
    CommandName.HOST_FACTS: _facts,
    CommandName.VM_CREATE: _vm_create,
    CommandName.VM_START: _vm_start,
    CommandName.VM_STOP: _vm_stop,
    CommandName.VM_REBOOT: _vm_reboot,
    CommandName.VM_DESTROY: _vm_destroy,
    CommandName.VM_SYNC: _vm_sync,
    CommandName.VOLUME_CREATE: _volume_create,
    CommandName.VOLUME_DELETE: _volume_delete,
    CommandName.VOLUMES_CREATE: _volumes_create,
    CommandName.VOLUMES_DELETE: _volumes_delete,
    CommandName.L2_BRIDGE_SETUP: _bridge_setup,
}
