"""KVM hosts: added over ssh (Ansible installs their agent) or with a one-time token for an
agent started by hand; their agent connects and reports."""
from __future__ import annotations

import json
from typing import Any

from sqlalchemy import select

from chalicelib.agents import commands
from chalicelib.agents.deploy import playbook_digest
from chalicelib.agents.protocol import CONNECT
from chalicelib.agents.tokens import new_token
from chalicelib.agents.tracker import set_status
from chalicelib.context import Context
from chalicelib.db.inventory import to_inventory
from chalicelib.db.models import Cluster, Host
from chalicelib.errors import Conflict, InvalidArgument
from chalicelib.flows.outcome import FlowEnd
from chalicelib.identity.ownership import get_visible
from chalicelib.resources import add_resource, delete_resource


def prepare_add_kvm_host(ctx: Context, *, cluster_uuid: str, name: str,
                         description: str | None, management_ip: str, username: str,
                         password: str | None, private_key: str | None, ssh_port: int,
                         deploy_agent: bool) -> dict[str, Any]:
    """The host's record, Connecting, with a CONNECT command waiting for its agent; the
    ``connect-host`` flow then deploys the agent (unless the operator starts it by hand)."""
    cluster = get_visible(ctx, Cluster, cluster_uuid, field="clusterUuid")
    if deploy_agent and not (password or private_key):
        raise InvalidArgument("deploying the agent needs the ssh password or privateKey of "
                              f"{username}@{management_ip}", details={"field": "password"})
    taken = ctx.session.scalar(select(Host).where(Host.management_ip == management_ip))
    if taken is not None:
        raise Conflict(f"host {taken.name} ({taken.uuid}) already has management IP "
                       f"{management_ip}", details={"field": "managementIp"})
    host = add_resource(ctx, Host(
        zone_uuid=cluster.zone_uuid, cluster_uuid=cluster.uuid, name=name,
        description=description, management_ip=management_ip, hypervisor_type="KVM",
        status="Connecting", ssh_username=username, ssh_password=password,
        ssh_private_key=private_key, ssh_port=ssh_port,
    ))
    commands.send(ctx.session, host.uuid, CONNECT)
    return {"resourceUuid": host.uuid, "hostUuid": host.uuid, "deployAgent": deploy_agent}


def settle_add_kvm_host(ctx: Context, flow: dict[str, Any], end: FlowEnd,
                        control_plane_url: str) -> dict[str, Any] | None:
    """Added; or, when the flow failed, gone with its token: nothing is half-added. A host
    whose agent is started by hand gets its one-time token in the job's result."""
    host = ctx.session.get(Host, flow["hostUuid"])
    if end is not FlowEnd.SUCCEEDED:
        if host is not None:
            delete_resource(ctx, Host, host.uuid, enforcing=False)
        return None
    if flow["deployAgent"]:
        return to_inventory(host)
    token, host.token_hash = new_token()
    ctx.session.flush()
    return {
        **to_inventory(host),
        "agentToken": token,
        "agentCommand": (f"aerie-agent --url {control_plane_url} --host-uuid {host.uuid} "
                         f"--token {token}"),
    }


def add_simulator_host(ctx: Context, *, cluster_uuid: str, name: str, description: str | None,
                       management_ip: str | None, cpu_num: int, memory_size: int,
                       simulator: dict[str, Any]) -> Host:
    """A simulated hypervisor: the runtime runs it (no agent process); it behaves as
    ``simulator`` says (per-command latency, failing commands, failure probability)."""
    cluster = get_visible(ctx, Cluster, cluster_uuid, field="clusterUuid")
    host = add_resource(ctx, Host(
        zone_uuid=cluster.zone_uuid, cluster_uuid=cluster.uuid, name=name,
        description=description, management_ip=management_ip or f"simulator-{name}",
        hypervisor_type="Simulator", status="Connecting", cpu_num=cpu_num,
        total_memory_capacity=memory_size,  # the simulated hypervisor's size, until it reports
        simulator_spec=json.dumps(simulator),
    ))
    commands.send(ctx.session, host.uuid, CONNECT)
    return host


def prepare_reconnect(ctx: Context, uuid: str) -> dict[str, Any]:
    """Ask the agent to connect again. A host whose agent Aerie deployed gets the playbook
    run again first when the playbook (or the operator's additions) changed since."""
    host = get_visible(ctx, Host, uuid)
    redeploy = host.agent_playbook_digest is not None and \
        host.agent_playbook_digest != playbook_digest()
    if host.status != "Connected" or redeploy:
        set_status(host, "Connecting")
    commands.send(ctx.session, host.uuid, CONNECT)
    return {"resourceUuid": host.uuid, "hostUuid": host.uuid, "deployAgent": redeploy}


def settle_reconnect(ctx: Context, flow: dict[str, Any], end: FlowEnd) -> Host:
    return ctx.session.get(Host, flow["hostUuid"], populate_existing=True)
