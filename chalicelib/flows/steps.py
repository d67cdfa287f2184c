"""Steps: what a flow is made of, and the registry that finds them by name.

A step is an object with a ``run`` and a ``rollback`` over the flow context (a JSON dict of
ids and small values). An agent step instead of ``run`` has ``command``: it returns the
command for a host agent, and the flow waits for the agent's report before it goes on.
"""
from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar, runtime_checkable

from sqlalchemy.orm import Session

FlowContext = dict[str, Any]

# Modules that register steps (and plugins that fill extension points) when imported. The
# step Lambda and the ASL compiler import them all; add yours here.
STEP_MODULES: tuple[str, ...] = ("chalicelib.compute.vm_steps", "chalicelib.compute.host_steps")

AGENT_RESULTS = "agentResults"  # where an agent step's reported result lands in the context
DEFAULT_AGENT_TIMEOUT_SECONDS = 300


@dataclass(frozen=True)
class AgentCommandRequest:
    """A command for one host's agent, as an agent step asks for it."""

    host_uuid: str
    name: str
    args: dict[str, Any] = field(default_factory=dict)


class AgentDispatch(Protocol):
    def send(self, request: AgentCommandRequest, task_token: str | None = None) -> str:
        """Queue the command (in its own transaction) and hand it towards the agent; with a
        ``task_token``, the agent's report resumes the Step Functions task waiting on it.
        Returns the command's uuid."""


@dataclass(frozen=True)
class StepEnv:
    """What a step may use, whichever runtime it runs in: short transactions (open one per
    piece of work, never across an agent wait) and the host agents."""

    session: Callable[[], AbstractContextManager[Session]]
    agents: AgentDispatch


@runtime_checkable
class Step(Protocol):
    name: str

    def run(self, ctx: FlowContext, env: StepEnv) -> None:
        """Do the step's work; record what later steps (and rollbacks) need in ``ctx``."""

    def rollback(self, ctx: FlowContext, env: StepEnv) -> None:
        """Undo ``run``, idempotently: it may run twice, or after a ``run`` that failed half
        way or never started its work."""


@runtime_checkable
class AgentStep(Protocol):
    name: str

    def command(self, ctx: FlowContext, env: StepEnv) -> AgentCommandRequest:
        """The command to send. Changes to ``ctx`` made here are dropped (on AWS the waiting
        task's output is the agent's report); the report lands in
        ``ctx["agentResults"][result_key(name)]``."""

    def rollback(self, ctx: FlowContext, env: StepEnv) -> None:
        """Undo the command's effect, idempotently (it may queue an agent command itself,
        without waiting for it)."""


AnyStep = Step | AgentStep


def result_key(step_name: str) -> str:
    """The step's key in ``ctx["agentResults"]`` and in recorded rollback failures: its name
    with every character but letters, digits and ``_`` made ``_`` (a JSONPath field name)."""
    return re.sub(r"[^A-Za-z0-9_]", "_", step_name)


def agent_result(ctx: FlowContext, step_name: str) -> dict[str, Any] | None:
    """What the agent reported for ``step_name``'s command, once that step has run."""
    return ctx.get(AGENT_RESULTS, {}).get(result_key(step_name))


def is_agent_step(implementation: AnyStep) -> bool:
    return callable(getattr(implementation, "command", None))


@dataclass(frozen=True)
class ExtensionStep:
    """A step a plugin put into an extension point."""

    name: str
    agent_timeout_seconds: int | None = None


class UnknownStep(LookupError):
    pass


class StepRegistry:
    """Step implementations by name, and the steps plugins put into extension points."""

    def __init__(self) -> None:
        self._steps: dict[str, AnyStep] = {}
        self._extensions: dict[str, list[ExtensionStep]] = {}

    def add(self, implementation: AnyStep, *, extends: str | None = None,
            agent_timeout_seconds: int | None = None) -> None:
        name = implementation.name
        if name in self._steps:
            raise ValueError(f"step {name!r} is registered twice")
        self._steps[name] = implementation
        if extends is not None:
            timeout = agent_timeout_seconds if is_agent_step(implementation) else None
            self._extensions.setdefault(extends, []).append(ExtensionStep(name, timeout))

    def get(self, name: str) -> AnyStep:
        try:
            return self._steps[name]
        except KeyError:
            raise UnknownStep(f"no step named {name!r} is registered") from None

    def extension(self, point: str) -> list[ExtensionStep]:
        """The steps plugins put into ``point``, in registration order."""
        return list(self._extensions.get(point, ()))

    def names(self) -> Iterator[str]:
        return iter(self._steps)


STEPS = StepRegistry()

T = TypeVar("T")


def step(name: str, *, extends: str | None = None,
         registry: StepRegistry | None = None) -> Callable[[type[T]], type[T]]:
    """Register the decorated class (instantiated without arguments) as step ``name``;
    ``extends`` puts it into that extension point of every chain that has it."""

    def register(cls: type[T]) -> type[T]:
        instance = cls()
        instance.name = name
        _require_methods(instance, name, "run", "rollback")
        (registry or STEPS).add(instance, extends=extends)
        return cls

    return register


def _require_methods(instance: object, name: str, *methods: str) -> None:
    """A step without its rollback would fail only when a flow needs it: refuse it now."""
    for method in methods:
        if not callable(getattr(instance, method, None)):
            raise TypeError(f"step {name!r} needs a {method}(ctx, env) method")


def agent_step(name: str, *, extends: str | None = None,
               timeout_seconds: int = DEFAULT_AGENT_TIMEOUT_SECONDS,
               registry: StepRegistry | None = None) -> Callable[[type[T]], type[T]]:
    """Like :func:`step`, for a class with ``command`` and ``rollback``. ``timeout_seconds``
    applies where the step fills an extension point; in a chain file the chain says it."""

    def register(cls: type[T]) -> type[T]:
        instance = cls()
        instance.name = name
        _require_methods(instance, name, "command", "rollback")
        (registry or STEPS).add(instance, extends=extends, agent_timeout_seconds=timeout_seconds)
        return cls

    return register


def load_step_modules(modules: tuple[str, ...] | None = None) -> None:
    """Import every module that registers steps (idempotent: Python imports a module once)."""
    for module in STEP_MODULES if modules is None else modules:
        importlib.import_module(module)
