"""The wire protocol between the control plane and a host agent: paths, header, names, shapes.

This module is the single source of truth for the agent side; the control plane copies these
constants (it must not import ``hostagent``, and ``hostagent`` never imports ``chalicelib``).

Fetch:  ``GET {url}/v1/hosts/{hostUuid}/agent/commands?waitSeconds=N`` (0 <= N <= 20)
        -> 200 ``{"commands": [{"id": str, "name": str, "args": {...}}]}``
Report: ``POST {url}/v1/hosts/{hostUuid}/agent/reports``
        body ``{"results": [CommandResult], "facts": HostFacts | null, "vms": [VmReport] | null}``
        -> 200 ``{"pingInterval": int}``
Queue:  ``GET {url}/v1/hosts/{hostUuid}/agent/queue`` (serverless control planes only)
        -> 200 ``{"queueUrl": str, "region": str, "credentials": {"accessKeyId",
        "secretAccessKey", "sessionToken", "expiration" (ISO 8601)}}``: credentials that can
        read and delete the host's own command queue and nothing else.
All carry ``Authorization: Agent <token>``.

Each command's args are read in ``arguments.py``; a volume's ``image`` is described in
``drivers/image_cache.py``, a NIC's ``dhcp`` in ``drivers/dhcp.py``.
"""
from __future__ import annotations

from enum import StrEnum
from typing import Any, NotRequired, TypedDict

AUTH_SCHEME = "Agent"
COMMANDS_PATH = "/v1/hosts/{host_uuid}/agent/commands"
REPORTS_PATH = "/v1/hosts/{host_uuid}/agent/reports"
QUEUE_PATH = "/v1/hosts/{host_uuid}/agent/queue"
WAIT_SECONDS_PARAM = "waitSeconds"
MAX_WAIT_SECONDS = 20
DEFAULT_PING_INTERVAL = 60
MAX_RESULTS_PER_REPORT = 1000  # the control plane refuses larger reports
MAX_ERROR_CHARS = 4000  # ... and longer error strings (its limit is 4096)


class VmState(StrEnum):
    RUNNING = "Running"
    STOPPED = "Stopped"
    PAUSED = "Paused"
    UNKNOWN = "Unknown"


class CommandName(StrEnum):
    CONNECT = "connect"
    PING = "ping"
    HOST_FACTS = "host.facts"
    VM_CREATE = "vm.create"
    VM_START = "vm.start"
    VM_STOP = "vm.stop"
    VM_REBOOT = "vm.reboot"
    VM_DESTROY = "vm.destroy"
    VM_SYNC = "vm.sync"
    VOLUME_CREATE = "volume.create"
    VOLUME_DELETE = "volume.delete"
    VOLUMES_CREATE = "volumes.create"  # a VM's volumes in one command
    VOLUMES_DELETE = "volumes.delete"
    L2_BRIDGE_SETUP = "l2.bridge.setup"


class Command(TypedDict):
    id: str
    name: str
    args: dict[str, Any]


class CommandResult(TypedDict):
    id: str
    ok: bool
    result: dict[str, Any] | None
    error: str | None


class VmReport(TypedDict):
    uuid: str
    state: str  # a VmState value


class HostFacts(TypedDict):
    cpuNum: int
    cpuSockets: NotRequired[int]
    memoryBytes: int
    os: str
    osVersion: str
    kernel: str
    libvirtVersion: str
    qemuVersion: str
    architecture: str
    hostname: str


class QueueCredentials(TypedDict):
    accessKeyId: str
    secretAccessKey: str
    sessionToken: str
    expiration: str


class QueueAccessGrant(TypedDict):
    queueUrl: str
    region: str
    credentials: QueueCredentials


class Report(TypedDict):
    results: list[CommandResult]
    facts: HostFacts | None
    vms: list[VmReport] | None


class ProtocolError(ValueError):
    """The other side sent something that does not follow this protocol."""


def authorization(token: str) -> str:
    return f"{AUTH_SCHEME} {token}"


def commands_path(host_uuid: str) -> str:
    return COMMANDS_PATH.format(host_uuid=host_uuid)


def reports_path(host_uuid: str) -> str:
    return REPORTS_PATH.format(host_uuid=host_uuid)


def queue_path(host_uuid: str) -> str:
    return QUEUE_PATH.format(host_uuid=host_uuid)


def parse_queue_access(body: Any) -> QueueAccessGrant:
    expected = ("expected {queueUrl, region, credentials: {accessKeyId, secretAccessKey, "
                "sessionToken, expiration}}")
    try:
        credentials = body["credentials"]
        values = [body["queueUrl"], body["region"],
                  *(credentials[key] for key in QueueCredentials.__annotations__)]
    except (KeyError, TypeError) as exc:
        raise ProtocolError(expected) from exc
    if not all(isinstance(value, str) and value for value in values):
        raise ProtocolError(expected)
    return body


def ok_result(command_id: str, result: dict[str, Any]) -> CommandResult:
    return {"id": command_id, "ok": True, "result": result, "error": None}


def error_result(command_id: str, error: str) -> CommandResult:
    if len(error) > MAX_ERROR_CHARS:
        suffix = " ... (truncated)"
        error = error[:MAX_ERROR_CHARS - len(suffix)] + suffix
    return {"id": command_id, "ok": False, "result": None, "error": error}


def parse_commands(body: Any) -> tuple[list[Command], list[str]]:
    """Split a fetch response body into commands and problems. An entry without a string id
    cannot be answered, so it is dropped (and named in the problems); a bad name or args is
    kept, for the agent to answer with an error result instead of acting on it."""
    if not isinstance(body, dict) or not isinstance(body.get("commands"), list):
        raise ProtocolError('expected {"commands": [...]}')
    commands: list[Command] = []
    problems: list[str] = []
    for entry in body["commands"]:
        command_id = entry.get("id") if isinstance(entry, dict) else None
        if not isinstance(command_id, str) or not command_id:
            problems.append(f"dropped a command without a string id: {entry!r:.200}")
            continue
        args = entry.get("args")
        commands.append({"id": command_id, "name": entry.get("name"),  # type: ignore[typeddict-item]
                         "args": {} if args is None else args})
    return commands, problems


def parse_ping_interval(body: Any) -> int | None:
    """The sync period the control plane asks for, or None when it did not say."""
    if not isinstance(body, dict):
        return None
    value = body.get("pingInterval")
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        return None
    return max(1, int(value))
