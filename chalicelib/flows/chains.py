"""Chains are data: ``statemachines/chains/<name>.json`` lists a flow's steps in order.

    {"name": "create-vm",
     "steps": ["vm.allocate-host",
               {"name": "vm.create-on-hypervisor", "waitsForAgent": true, "timeoutSeconds": 600},
               "@vm.after_create"]}

An entry is a step name, a step object (``waitsForAgent``/``timeoutSeconds`` for agent
steps; ``longRunning`` for a step that works for minutes in short transactions of its own,
like deploying an agent with Ansible) or ``@<point>``, an extension point that becomes the
steps plugins registered for it.
A chain may build on another one:

    {"name": "create-appliance-vm", "extends": "create-vm",
     "replace": {"vm.allocate-nics": "appliance.allocate-nics"},
     "insert": [{"after": "vm.allocate-host", "steps": ["appliance.pick-management-ip"]}]}

``replace`` swaps entries (by step name or ``@point``) first, then ``insert`` adds entries
``before`` or ``after`` one.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chalicelib.flows.steps import DEFAULT_AGENT_TIMEOUT_SECONDS, StepRegistry, result_key

CHAINS_DIR = Path(__file__).resolve().parents[2] / "statemachines" / "chains"


class ChainError(ValueError):
    """A chain file that cannot be resolved into steps."""


@dataclass(frozen=True)
class ChainStep:
    name: str
    agent_timeout_seconds: int | None = None  # set: the step waits for a host agent
    # The step opens its own short transactions while it works for long: it never shares a
    # transaction with other steps (the embedded runner batches the others).
    long_running: bool = False

    @property
    def waits_for_agent(self) -> bool:
        return self.agent_timeout_seconds is not None


@dataclass(frozen=True)
class ExtensionPoint:
    name: str


Entry = ChainStep | ExtensionPoint


@dataclass(frozen=True)
class Chain:
    """A chain with its extension points filled: the steps a flow runs, in order."""

    name: str
    steps: tuple[ChainStep, ...]

    def step(self, name: str) -> ChainStep:
        for candidate in self.steps:
            if candidate.name == name:
                return candidate
        raise KeyError(name)


def parse_entry(raw: Any, chain: str) -> Entry:
    if isinstance(raw, str):
        if raw.startswith("@"):
            return ExtensionPoint(raw[1:])
        return ChainStep(raw)
    if isinstance(raw, dict) and isinstance(raw.get("name"), str):
        if raw.get("waitsForAgent"):
            return ChainStep(raw["name"], int(raw.get("timeoutSeconds",
                                                      DEFAULT_AGENT_TIMEOUT_SECONDS)))
        return ChainStep(raw["name"], long_running=bool(raw.get("longRunning")))
    raise ChainError(f"chain {chain!r}: {raw!r} is neither a step name nor a step object")


def _label(entry: Entry) -> str:
    return f"@{entry.name}" if isinstance(entry, ExtensionPoint) else entry.name


class ChainLibrary:
    """Every chain of a directory, with ``extends``/``replace``/``insert`` applied."""

    def __init__(self, raw_chains: dict[str, dict[str, Any]]) -> None:
        self._raw = raw_chains
        self._entries: dict[str, list[Entry]] = {}

    @classmethod
    def load(cls, directory: Path = CHAINS_DIR) -> ChainLibrary:
        raw_chains: dict[str, dict[str, Any]] = {}
        for path in sorted(directory.glob("*.json")):
            raw = json.loads(path.read_text())
            if raw.get("name") != path.stem:
                raise ChainError(f"{path}: its name must be {path.stem!r}, as the file's")
            raw_chains[path.stem] = raw
        return cls(raw_chains)

    def names(self) -> list[str]:
        return sorted(self._raw)

    def entries(self, name: str, _seen: tuple[str, ...] = ()) -> list[Entry]:
        if name in self._entries:
            return list(self._entries[name])
        if name not in self._raw:
            raise ChainError(f"no chain named {name!r}")
        if name in _seen:
            raise ChainError(f"chains extend each other in a circle: {' -> '.join(_seen)}")
        raw = self._raw[name]
        if "extends" in raw:
            entries = self.entries(raw["extends"], (*_seen, name))
        else:
            entries = [parse_entry(item, name) for item in raw.get("steps", [])]
        for old, new in raw.get("replace", {}).items():
            at = self._position(entries, old, name)
            entries[at] = parse_entry(new, name)
        for insertion in raw.get("insert", []):
            anchor = insertion.get("after") or insertion.get("before")
            if anchor is None:
                raise ChainError(f"chain {name!r}: an insert needs 'before' or 'after'")
            at = self._position(entries, anchor, name) + (1 if "after" in insertion else 0)
            entries[at:at] = [parse_entry(item, name) for item in insertion.get("steps", [])]
        self._entries[name] = entries
        return list(entries)

    @staticmethod
    def _position(entries: list[Entry], label: str, chain: str) -> int:
        for at, entry in enumerate(entries):
            if _label(entry) == label:
                return at
        raise ChainError(f"chain {chain!r}: no step {label!r} to replace or insert at")

    def resolve(self, name: str, registry: StepRegistry) -> Chain:
        """The chain's steps, extension points filled from ``registry``."""
        steps: list[ChainStep] = []
        for entry in self.entries(name):
            if isinstance(entry, ExtensionPoint):
                steps.extend(ChainStep(extension.name, extension.agent_timeout_seconds)
                             for extension in registry.extension(entry.name))
            else:
                steps.append(entry)
        keys = [result_key(s.name) for s in steps]
        if len(set(keys)) != len(keys):
            raise ChainError(f"chain {name!r} names a step twice (or two steps differ only "
                             f"in punctuation): {[s.name for s in steps]}")
        if not steps:
            raise ChainError(f"chain {name!r} has no steps")
        return Chain(name, tuple(steps))
