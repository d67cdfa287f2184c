"""The steps that put an agent on a KVM host and see it connect (chain ``connect-host``).

``AddKvmHost`` runs them to install the agent over ssh with Ansible; ``ReconnectHost`` runs
them again when the playbook changed since the host was set up. When the flow's context says
``deployAgent: false`` (the operator starts the agent by hand) both steps do nothing.
"""
from __future__ import annotations

import time

from sqlalchemy import select, update

from chalicelib.agents.deploy import (
    AgentSettings,
    DeployFailed,
    DeployProgress,
    SshTarget,
    deploy_agent,
)
from chalicelib.agents.tokens import new_token
from chalicelib.agents.tracker import set_status
from chalicelib.db.models import Host
from chalicelib.errors import AerieError
from chalicelib.flows import FlowContext, StepEnv, step
from chalicelib.flows.step_detail import show_step_detail
from chalicelib.globalconfig import ConfigDefinition, define, get_value
from chalicelib.settings import Settings

CONNECT_TIMEOUT = define(ConfigDefinition(
    "host", "connect.timeout", int, 120,
    "Seconds a freshly deployed agent has to connect before AddKvmHost fails.",
    min=5, max=3600,
))
POLL_SECONDS = 0.2


class AgentDeployFailed(AerieError):
    def __init__(self, failure: DeployFailed) -> None:
        where = f" at task {failure.task!r}" if failure.task else ""
        super().__init__(
            f"deploying the agent on {failure.address} failed{where} ({failure.reason}): "
            f"{failure.message}",
            code="AgentDeployFailed",
            details={"managementIp": failure.address, "task": failure.task,
                     "reason": failure.reason})


class AgentDidNotConnect(AerieError):
    def __init__(self, address: str, seconds: int, url: str) -> None:
        super().__init__(
            f"the agent on {address} was installed but did not connect within {seconds} s: "
            f"check that the host can reach {url} and read the agent's log there",
            code="AgentDidNotConnect", details={"managementIp": address})


@step("host.deploy-agent")
class DeployAgent:
    """Run the playbook over ssh. The agent gets a new token (only its hash is kept), so the
    plain token exists only in this step and on the host."""

    def run(self, ctx: FlowContext, env: StepEnv) -> None:
        if not ctx.get("deployAgent"):
            return
        token, token_hash = new_token()
        with env.session() as db:
            host = db.get(Host, ctx["hostUuid"])
            target = SshTarget(host.management_ip, host.ssh_port, host.ssh_username or "root",
                               host.ssh_password, host.ssh_private_key)
            host.token_hash = token_hash
            set_status(host, "Connecting")  # until the agent with the new token reports
        settings = Settings.from_env()

        def show(progress: DeployProgress) -> None:
            if ctx.get("jobUuid"):
                with env.session() as db:
                    show_step_detail(db, ctx["jobUuid"], self.name, {
                        "task": progress.task_number, "tasks": progress.task_total,
                        "taskName": progress.task_name})

        try:
            result = deploy_agent(target, AgentSettings(settings.agent_url, ctx["hostUuid"],
                                                        token),
                                  var_dir=settings.var_dir, on_progress=show)
        except DeployFailed as failure:
            raise AgentDeployFailed(failure) from failure
        except ImportError as missing:  # a Lambda bundle: no Ansible, no ssh client
            raise AerieError(
                "deploying an agent needs Ansible (ansible-runner) and an ssh client where "
                f"flow steps run, and this one has none ({missing}); add the host with "
                "deployAgent=false and start aerie-agent on it with the token the job "
                "returns", code="AgentDeployUnavailable") from missing
        with env.session() as db:
            db.execute(update(Host).where(Host.uuid == ctx["hostUuid"])
                       .values(agent_playbook_digest=result.playbook_digest))
        ctx["agentDeployment"] = {"changedTasks": result.changed, "okTasks": result.ok,
                                  "seconds": round(result.seconds, 1)}

    def rollback(self, ctx: FlowContext, env: StepEnv) -> None:
        """Nothing to undo here: a host being added is removed when its flow failed (with its
        token hash, so an agent the playbook left behind cannot connect), and a host being
        reconnected keeps its record."""


@step("host.await-connection")
class AwaitConnection:
    """The agent the playbook started connects and reports (it runs the CONNECT command
    queued when the flow began): the host is Connected."""

    def run(self, ctx: FlowContext, env: StepEnv) -> None:
        if not ctx.get("deployAgent"):
            return
        with env.session() as db:
            timeout = get_value(db, CONNECT_TIMEOUT)
            address = db.scalar(select(Host.management_ip).where(Host.uuid == ctx["hostUuid"]))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with env.session() as db:
                status = db.scalar(select(Host.status).where(Host.uuid == ctx["hostUuid"]))
            if status == "Connected":
                return
            time.sleep(POLL_SECONDS)
        raise AgentDidNotConnect(address, timeout, Settings.from_env().agent_url)

    def rollback(self, ctx: FlowContext, env: StepEnv) -> None:
        """Waiting changed nothing."""
