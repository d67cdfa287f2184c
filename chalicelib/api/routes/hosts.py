"""Hosts, and the two calls their agents make: fetch commands, report state."""
from __future__ import annotations

import time
from typing import Annotated, Any

from pydantic import ConfigDict, Field

from chalicelib.agents import commands, tracker
from chalicelib.agents.protocol import MAX_WAIT_SECONDS, CommandResult, ReportedVm
from chalicelib.agents.vm_sync import sync_vms
from chalicelib.api.crud import UuidRequest, resource_operations
from chalicelib.api.operation import FlowBinding, Operation
from chalicelib.api.request import (
    ApiRequest,
    CreateRequest,
    Description,
    Name,
    PrivateKey,
    Secret,
    Uuid,
)
from chalicelib.compute import hosts
from chalicelib.context import Context
from chalicelib.db.models import Host
from chalicelib.flows.outcome import FlowEnd
from chalicelib.identity.ownership import get_visible
from chalicelib.settings import Settings

TAG = "host"
CONNECT_HOST = "connect-host"
POLL_STEP = 0.1


class AddKvmHostRequest(CreateRequest):
    cluster_uuid: Uuid
    name: Name
    description: Description | None = None
    management_ip: Annotated[str, Field(min_length=1, max_length=255)]
    username: Annotated[str, Field(min_length=1, max_length=255)] = "root"
    password: Secret | None = None
    private_key: PrivateKey | None = None
    ssh_port: Annotated[int, Field(ge=1, le=65535)] = 22
    deploy_agent: bool = Field(
        True, description="Install the agent over ssh with Ansible (needs password or "
        "privateKey); false: start aerie-agent yourself with the token in the job's result")


class SimulatorBehaviour(ApiRequest):
    model_config = ConfigDict(strict=False)

    latency_ms: Annotated[float, Field(ge=0, le=60_000)] = 0
    failure_probability: Annotated[float, Field(ge=0, le=1)] = 0
    fail_commands: Annotated[list[Annotated[str, Field(max_length=64)]],
                             Field(max_length=50)] = Field(default_factory=list)
    seed: int | None = None


class AddSimulatorHostRequest(CreateRequest):
    cluster_uuid: Uuid
    name: Name
    description: Description | None = None
    management_ip: Annotated[str, Field(min_length=1, max_length=255)] | None = None
    cpu_num: Annotated[int, Field(ge=1, le=4096)] = 32
    memory_size: Annotated[int, Field(ge=2**20, le=2**50)] = 128 * 2**30
    simulator: SimulatorBehaviour = Field(default_factory=SimulatorBehaviour)


class AgentRequest(ApiRequest):
    model_config = ConfigDict(strict=False)

    host_uuid: Uuid


class FetchCommandsRequest(AgentRequest):
    wait_seconds: Annotated[int, Field(ge=0, le=MAX_WAIT_SECONDS)] = 0


class ReportRequest(AgentRequest):
    results: Annotated[list[CommandResult], Field(max_length=1000)] = Field(default_factory=list)
    facts: dict[str, Any] | None = None
    vms: Annotated[list[ReportedVm], Field(max_length=10_000)] | None = None


def _fetch(ctx: Context, request: FetchCommandsRequest) -> dict:
    """Long-poll: short transactions, no lock or connection held while waiting."""
    deadline = time.monotonic() + request.wait_seconds
    while True:
        with ctx.database.session() as db:
            found = commands.claim(db, request.host_uuid)
        if found or time.monotonic() >= deadline:
            return {"commands": found}
        time.sleep(POLL_STEP)


def _prepare_add(ctx: Context, request: AddKvmHostRequest) -> dict[str, Any]:
    return hosts.prepare_add_kvm_host(ctx, **request.fields())


def _existing_host(ctx: Context, request: UuidRequest) -> None:
    get_visible(ctx, Host, request.uuid)


def _prepare_reconnect(ctx: Context, request: UuidRequest) -> dict[str, Any]:
    return hosts.prepare_reconnect(ctx, request.uuid)


def _settle_add(ctx: Context, flow: dict[str, Any], end: FlowEnd) -> dict[str, Any] | None:
    return hosts.settle_add_kvm_host(ctx, flow, end, Settings.from_env().agent_url)


def _queue_access(ctx: Context, request: AgentRequest) -> dict:
    return ctx.agents.queue_access(request.host_uuid)


def _report(ctx: Context, request: ReportRequest) -> dict:
    host = ctx.session.get(Host, request.host_uuid)
    commands.record(ctx.session, host.uuid, request.results)
    if request.vms is not None:
        sync_vms(ctx.session, host, request.vms)  # first: capacity counts the VMs as they are
    return {"pingInterval": tracker.reported(ctx.session, host, request.facts)}


OPERATIONS = [
    Operation("AddKvmHost", "POST", "/v1/hosts/kvm", AddKvmHostRequest, _prepare_add,
              "Add a KVM host: Ansible installs and starts its agent over ssh, and the job "
              "ends when the agent connected (its progress shows the playbook's task); with "
              "deployAgent=false the job's result carries the agent's one-time token and the "
              "command that starts it", asynchronous=True, admin_only=True, resource="Host",
              flow=FlowBinding(CONNECT_HOST, _prepare_add, _settle_add), tags=(TAG,)),
    Operation("AddSimulatorHost", "POST", "/v1/hosts/simulator", AddSimulatorHostRequest,
              lambda ctx, r: hosts.add_simulator_host(
                  ctx, **r.fields("simulator"), simulator=r.simulator.model_dump()),
              "Add a simulated host run by the control plane itself (tests, scale runs)",
              asynchronous=True, admin_only=True, resource="Host", tags=(TAG,)),
    *resource_operations(Host, "/v1/hosts", admin_only=True, has_state=True, tag=TAG),
    Operation("ReconnectHost", "PUT", "/v1/hosts/{uuid}/actions/reconnect", UuidRequest,
              _prepare_reconnect, "Ask the host's agent to connect again and report; an agent "
              "Aerie deployed is deployed again first when the playbook changed since (the "
              "job then ends when it connected)", asynchronous=True, admin_only=True,
              resource="Host", sync_on=("host", "uuid"), validate=_existing_host,
              flow=FlowBinding(CONNECT_HOST, _prepare_reconnect, hosts.settle_reconnect),
              tags=(TAG,)),
    Operation("FetchAgentCommands", "GET", "/v1/hosts/{hostUuid}/agent/commands",
              FetchCommandsRequest, _fetch,
              "For agents: the host's pending commands, waiting up to waitSeconds for one",
              authentication="agent", transactional=False, query_params=("waitSeconds",),
              tags=("agent",)),
    Operation("GetAgentQueue", "GET", "/v1/hosts/{hostUuid}/agent/queue", AgentRequest,
              _queue_access, "For serverless agents: the host's command queue and "
              "credentials that can read that queue and nothing else (renew before they "
              "expire)", authentication="agent", transactional=False, tags=("agent",)),
    Operation("ReportAgentState", "POST", "/v1/hosts/{hostUuid}/agent/reports", ReportRequest,
              _report, "For agents: command results, host facts and the VMs on the host",
              authentication="agent", tags=("agent",)),
]
