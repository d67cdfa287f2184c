"""Deploying the host agent: the playbook in ``ansible/`` run through ansible-runner.

``deploy_agent(target, settings, var_dir=…)`` prepares one Debian/Ubuntu KVM host over SSH
(packages, libvirt/qemu, the agent in its own virtualenv, its settings, running) and returns
a DeployResult or raises DeployFailed. ``playbook_digest()`` names what a run would do, so a
host deployed with another digest can be deployed again.
"""
from chalicelib.agents.deploy.model import (
    AgentSettings,
    DeployFailed,
    DeployProgress,
    DeployResult,
    FailureReason,
    SshTarget,
)
from chalicelib.agents.deploy.playbook import OperatorSettings, playbook_digest
from chalicelib.agents.deploy.runner import deploy_agent

__all__ = [
    "AgentSettings",
    "DeployFailed",
    "DeployProgress",
    "DeployResult",
    "FailureReason",
    "OperatorSettings",
    "SshTarget",
    "deploy_agent",
    "playbook_digest",
]
