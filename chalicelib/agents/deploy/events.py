"""Reading one run's ansible-runner events: progress, the first failure, the recap."""
from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from chalicelib.agents.deploy.model import DeployFailed, DeployProgress, FailureReason

MAX_MESSAGE_CHARS = 600
DETAIL_LINES = 3
# What ssh and sshpass say when the credentials are refused (sshpass: "Invalid/incorrect
# password"; ssh: "Permission denied (publickey,password)").
AUTHENTICATION_FAILURE = re.compile(
    r"permission denied|invalid/incorrect password|authentication failed"
    r"|too many authentication failures", re.IGNORECASE)


class PlaybookEvents:
    """Feed it every event (``handle`` is ansible-runner's ``event_handler``)."""

    def __init__(self, address: str, task_total: int,
                 on_progress: Callable[[DeployProgress], None]) -> None:
        self.address = address
        self.task_total = task_total
        self.on_progress = on_progress
        self.tasks_started = 0
        self.current_task: str | None = None
        self.failure: DeployFailed | None = None
        self.changed = 0
        self.ok = 0

    def handle(self, event: Mapping[str, Any]) -> bool:
        """Returns False: ansible-runner then keeps no copy of the event on disk."""
        kind = event.get("event")
        data: Mapping[str, Any] = event.get("event_data") or {}
        if kind == "playbook_on_task_start" and not data.get("is_conditional"):
            # (a handler's start comes as this event too, flagged is_conditional)
            self._task_started(str(data.get("task") or data.get("task_action") or "?"))
        elif kind == "runner_on_unreachable":
            message = failure_message(data.get("res") or {})
            reason: FailureReason = ("authentication" if AUTHENTICATION_FAILURE.search(message)
                                     else "unreachable")
            self._fail(reason, message, data)
        elif kind == "runner_on_failed" and not data.get("ignore_errors"):
            self._fail("task-failed", failure_message(data.get("res") or {}), data)
        elif kind == "playbook_on_stats":
            self.changed = sum((data.get("changed") or {}).values())
            self.ok = sum((data.get("ok") or {}).values())
        return False

    def _task_started(self, name: str) -> None:
        self.tasks_started += 1
        self.current_task = name
        self.task_total = max(self.task_total, self.tasks_started)
        self.on_progress(DeployProgress(self.tasks_started, self.task_total, name))

    def _fail(self, reason: FailureReason, message: str, data: Mapping[str, Any]) -> None:
        if self.failure is None:  # the first one is the cause
            task = data.get("task") or self.current_task
            self.failure = DeployFailed(self.address, reason, message, task)


def failure_message(result: Mapping[str, Any]) -> str:
    """Ansible's own words for a failed result: ``msg``, with the end of stderr (or stdout)
    for commands; for a loop, those of the first failed item."""
    for item in result.get("results") or ():
        if isinstance(item, Mapping) and item.get("failed"):
            return failure_message(item)
    message = str(result.get("msg") or "").strip()
    output = str(result.get("stderr") or result.get("stdout") or "").strip()
    if output:
        detail = " / ".join(output.splitlines()[-DETAIL_LINES:])
        message = f"{message}: {detail}" if message else detail
    return shorten(message or "no message", MAX_MESSAGE_CHARS)


def shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"
