"""KVM hosts: added with a one-time agent token; their agent connects and reports."""
from __future__ import annotations

import json
from typing import Any

from chalicelib.agents import commands
from chalicelib.agents.protocol import CONNECT
from chalicelib.agents.tokens import new_token
from chalicelib.agents.tracker import set_status
from chalicelib.context import Context
from chalicelib.db.inventory import to_inventory
from chalicelib.db.models import Cluster, Host
from chalicelib.errors import InvalidArgument
from chalicelib.identity.ownership import get_visible
from chalicelib.resources import add_resource


def add_kvm_host(ctx: Context, *, cluster_uuid: str, name: str, description: str | None,
                 management_ip: str, username: str, password: str | None, ssh_port: int,
                 deploy_agent: bool, control_plane_url: str) -> dict[str, Any]:
    cluster = get_visible(ctx, Cluster, cluster_uuid, field="clusterUuid")
    if deploy_agent:
        raise InvalidArgument(
            "deploying the agent over ssh is not available in this version; add the host with "
            "deployAgent=false and start aerie-agent on it with the token in the reply",
            details={"field": "deployAgent"},
        )
    token, token_hash = new_token()
    host = add_resource(ctx, Host(
        zone_uuid=cluster.zone_uuid, cluster_uuid=cluster.uuid, name=name,
        description=description, management_ip=management_ip, hypervisor_type="KVM",
        status="Connecting", token_hash=token_hash, ssh_username=username,
        ssh_password=password, ssh_port=ssh_port,
    ))
    commands.send(ctx.session, host.uuid, CONNECT)
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


def reconnect_host(ctx: Context, uuid: str) -> Host:
    host = get_visible(ctx, Host, uuid)
    if host.status != "Connected":
        set_status(host, "Connecting")
    commands.send(ctx.session, host.uuid, CONNECT)
    return host
