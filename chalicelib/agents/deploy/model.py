"""What a deployment takes and gives back. Secrets never appear in a repr."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

FailureReason = Literal["unreachable", "authentication", "task-failed", "timeout"]


@dataclass(frozen=True)
class SshTarget:
    address: str
    port: int
    username: str
    password: str | None = field(default=None, repr=False)
    private_key: str | None = field(default=None, repr=False)  # the key's text (PEM/OpenSSH)


@dataclass(frozen=True)
class AgentSettings:
    control_plane_url: str  # as the host reaches it
    host_uuid: str
    token: str = field(repr=False)


@dataclass(frozen=True)
class DeployProgress:
    task_number: int  # 1 … task_total
    task_total: int
    task_name: str


@dataclass(frozen=True)
class DeployResult:
    changed: int
    ok: int
    seconds: float
    playbook_digest: str


class DeployFailed(Exception):
    """The deployment stopped. ``reason`` says what kind of trouble, ``task`` where (None
    when no task had started), ``message`` what Ansible said (shortened)."""

    def __init__(self, address: str, reason: FailureReason, message: str,
                 task: str | None = None) -> None:
        where = f" at task '{task}'" if task else ""
        super().__init__(f"deploying the agent to {address} failed ({reason}){where}: "
                         f"{message}")
        self.address = address
        self.reason: FailureReason = reason
        self.message = message
        self.task = task
