"""Recording fake steps and a fake host agent for the flow tests (no tests here).

Every step of every chain gets a fake that records its runs and rollbacks in a
:class:`Journal` and fails when the journal says so; the fake agent answers commands, or
fails them, or stays silent, and resumes Step Functions tasks the way a report would.
"""
from __future__ import annotations

import itertools
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from chalicelib.flows.agent_waits import complete_agent_wait
from chalicelib.flows.chains import ChainLibrary, ChainStep
from chalicelib.flows.local import AgentOutcome
from chalicelib.flows.steps import (
    AgentCommandRequest,
    FlowContext,
    StepEnv,
    StepRegistry,
    agent_step,
    step,
)

PLUGIN_STEP = "test.plugin-after-create"
PLUGIN_AGENT_STEP = "test.plugin-agent-before-start"


class InjectedFailure(RuntimeError):
    pass


@dataclass
class Journal:
    """What the fakes did, and where they are told to fail."""

    entries: list[tuple[str, str]] = field(default_factory=list)
    fail: set[tuple[str, str]] = field(default_factory=set)  # ("run"|"rollback"|"send", step)
    agent_fails: set[str] = field(default_factory=set)  # the agent reports failure
    agent_silent: set[str] = field(default_factory=set)  # the agent never reports
    lock: threading.Lock = field(default_factory=threading.Lock)

    def reset(self, fail=(), agent_fails=(), agent_silent=()) -> None:
        with self.lock:
            self.entries = []
            self.fail, self.agent_fails = set(fail), set(agent_fails)
            self.agent_silent = set(agent_silent)

    def record(self, action: str, step_name: str) -> None:
        with self.lock:
            self.entries.append((action, step_name))
        if (action, step_name) in self.fail:
            raise InjectedFailure(f"{action} of {step_name} failed as told")


def recording_step(journal: Journal, name: str, registry: StepRegistry,
                   extends: str | None = None) -> None:
    @step(name, extends=extends, registry=registry)
    class RecordingStep:
        def run(self, ctx: FlowContext, env: StepEnv) -> None:
            ctx.setdefault("ran", []).append(name)
            journal.record("run", name)

        def rollback(self, ctx: FlowContext, env: StepEnv) -> None:
            journal.record("rollback", name)


def recording_agent_step(journal: Journal, name: str, registry: StepRegistry,
                         extends: str | None = None, timeout_seconds: int = 300) -> None:
    @agent_step(name, extends=extends, registry=registry, timeout_seconds=timeout_seconds)
    class RecordingAgentStep:
        def command(self, ctx: FlowContext, env: StepEnv) -> AgentCommandRequest:
            ctx["dropped"] = "an agent step's context changes do not count"
            journal.record("run", name)
            journal.record("send", name)
            return AgentCommandRequest("host-1", name, {"ran": ctx.get("ran", [])})

        def rollback(self, ctx: FlowContext, env: StepEnv) -> None:
            journal.record("rollback", name)


def recording_registry(journal: Journal, library: ChainLibrary,
                       with_plugins: bool = True) -> StepRegistry:
    """A fake for every step the library's chains name (agent fakes where the chain says
    the step waits for an agent), and, ``with_plugins``, two plugin steps in extension
    points of the VM chains."""
    registry = StepRegistry()
    seen: set[str] = set()
    for name in library.names():
        for entry in library.entries(name):
            if entry.name in seen or not isinstance(entry, ChainStep):
                continue
            seen.add(entry.name)
            if entry.waits_for_agent:
                recording_agent_step(journal, entry.name, registry)
            else:
                recording_step(journal, entry.name, registry)
    if with_plugins:
        recording_step(journal, PLUGIN_STEP, registry, extends="vm.after_create")
        recording_agent_step(journal, PLUGIN_AGENT_STEP, registry, extends="vm.before_start",
                             timeout_seconds=120)
    return registry


class FakeAgents:
    """The host agents: each command is answered as the journal says. With a Step Functions
    client, an answer resumes the waiting task from another thread, as a report would."""

    def __init__(self, journal: Journal, stepfunctions: Any = None) -> None:
        self.journal = journal
        self.stepfunctions = stepfunctions
        self.sent: list[AgentCommandRequest] = []
        self._outcomes: dict[str, AgentOutcome | None] = {}
        self._ids = itertools.count(1)

    def _answer(self, request: AgentCommandRequest) -> AgentOutcome | None:
        if request.name in self.journal.agent_silent:
            return None
        if request.name in self.journal.agent_fails:
            return AgentOutcome(ok=False, error=f"{request.name}: the hypervisor said no")
        return AgentOutcome(ok=True, result={"reportedBy": request.name,
                                             "sawRan": request.args.get("ran", [])})

    def send(self, request: AgentCommandRequest, task_token: str | None = None) -> str:
        command_uuid = f"command-{next(self._ids)}"
        self.sent.append(request)
        outcome = self._answer(request)
        self._outcomes[command_uuid] = outcome
        if task_token is not None and outcome is not None:
            threading.Thread(target=complete_agent_wait,
                             args=(self.stepfunctions, task_token, outcome)).start()
        return command_uuid

    def wait(self, command_uuid: str, timeout_seconds: float) -> AgentOutcome | None:
        return self._outcomes[command_uuid]


@contextmanager
def no_database():
    raise AssertionError("the fake steps do not use the database")
    yield  # pragma: no cover


def fake_env(agents: FakeAgents) -> StepEnv:
    return StepEnv(session=no_database, agents=agents)
