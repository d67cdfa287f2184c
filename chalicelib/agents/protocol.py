"""The wire protocol between control plane and host agents (the agent keeps its own copy of
these names in hostagent/protocol.py)."""
from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

CONNECT = "connect"
PING = "ping"
HOST_FACTS = "host.facts"
VM_CREATE, VM_START, VM_STOP, VM_REBOOT, VM_DESTROY, VM_SYNC = (
    "vm.create", "vm.start", "vm.stop", "vm.reboot", "vm.destroy", "vm.sync")
VOLUME_CREATE, VOLUME_DELETE = "volume.create", "volume.delete"
VOLUMES_CREATE, VOLUMES_DELETE = "volumes.create", "volumes.delete"
L2_BRIDGE_SETUP = "l2.bridge.setup"

MAX_WAIT_SECONDS = 20


class _Wire(BaseModel):
    model_config = ConfigDict(extra="ignore")


class CommandResult(_Wire):
    id: Annotated[str, Field(max_length=64)]
    ok: bool
    result: dict[str, Any] | None = None
    error: Annotated[str, Field(max_length=4096)] | None = None


class ReportedVm(_Wire):
    uuid: Annotated[str, Field(max_length=64)]
    state: Literal["Running", "Stopped", "Paused", "Unknown"]


class Report(_Wire):
    results: list[CommandResult] = Field(default_factory=list)
    facts: dict[str, Any] | None = None
    vms: list[ReportedVm] | None = None
