"""Tab completion for the shell: operation names, their parameters, and for Query operations
the queryable fields, operators and join paths one hop at a time (``vmInstance.`` → the VM's
fields and its joinable resources), from ``GET /v1/query-metadata``:

    {"resources": {"Zone": {"operation": "QueryZone", "path": "/v1/zones",
                            "fields": {"uuid": "string", …}, "joins": {"cluster": "Cluster", …}}},
     "operators": ["=", "!=", …], "tagFields": ["__systemTag__", "__userTag__"]}

Without metadata (an older server), a Query operation completes the fields of its
``<Resource>Inventory`` schema and offers no joins."""
from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Any

from prompt_toolkit.completion import CompleteEvent, Completer, Completion
from prompt_toolkit.document import Document

from cli.arguments import OPERATORS
from cli.spec import ApiSpec, Operation

SHELL_COMMANDS = {"login": "log in (--account, --user, --password, --url)",
                  "logout": "end the session", "help": "list operations, or help <Operation>",
                  "exit": "leave the shell", "quit": "leave the shell"}
LOGIN_OPTIONS = ("--account", "--user", "--password", "--url")
FLAGS = ("--json", "--help", "--no-wait")
_KEY = re.compile(r"[A-Za-z0-9_.\-]*")


class AerieCompleter(Completer):
    def __init__(self, spec: ApiSpec, metadata: dict[str, Any] | None = None) -> None:
        self.spec = spec
        self.metadata = metadata or {}
        self.resources: dict[str, dict[str, Any]] = self.metadata.get("resources") or {}
        self.operators: list[str] = list(self.metadata.get("operators") or OPERATORS)
        self.tag_fields: list[str] = list(self.metadata.get("tagFields") or [])
        self._by_operation = {r.get("operation"): name for name, r in self.resources.items()}

    # -- what a resource offers ------------------------------------------------------------

    def resource_of(self, op: Operation) -> str | None:
        return self._by_operation.get(op.name) or op.resource or (
            op.name[len("Query"):] if op.is_query else None)

    def fields(self, resource: str) -> dict[str, str]:
        known = self.resources.get(resource)
        if known is not None:
            fields = known.get("fields") or {}
            return dict(fields) if isinstance(fields, dict) else {name: "" for name in fields}
        return {name: "" for name in self.spec.inventory_fields(resource)}

    def joins(self, resource: str) -> dict[str, str]:
        return dict((self.resources.get(resource) or {}).get("joins") or {})

    def walk(self, resource: str, hops: list[str]) -> str | None:
        """The resource a dotted path's joins lead to, or None when a hop is unknown."""
        for hop in hops:
            nxt = self.joins(resource).get(hop)
            if nxt is None:
                return None
            resource = nxt
        return resource

    # -- prompt_toolkit --------------------------------------------------------------------

    def get_completions(self, document: Document,
                        complete_event: CompleteEvent) -> Iterable[Completion]:
        text = document.text_before_cursor
        words = text.split()
        current = "" if not words or text[-1].isspace() else words[-1]
        before = words[:-1] if current else words
        if not before:
            yield from self._operations(current)
            return
        command = before[0]
        if command == "help":
            if len(before) == 1:
                yield from self._operations(current, shell_commands=False)
            return
        if command == "login":
            yield from self._choices(current, LOGIN_OPTIONS + ("--json",), "option")
            return
        op = self.spec.operations.get(command)
        if op is None:
            return
        if current.startswith("-"):
            yield from self._choices(current, FLAGS, "option")
            return
        given = {m.group(0) for w in before[1:] if (m := _KEY.match(w))}
        if op.is_query:
            yield from self._query(op, current)
        else:
            yield from self._parameters(op, current, given)

    def _operations(self, word: str, shell_commands: bool = True) -> Iterator[Completion]:
        lowered = word.lower()
        names = sorted(self.spec.operations)
        starts = [n for n in names if n.lower().startswith(lowered)]
        inside = [n for n in names if len(word) >= 3 and lowered in n.lower()
                  and n not in starts]
        for name in starts + inside:
            yield Completion(name, -len(word), display_meta=self.spec.operations[name].summary)
        if shell_commands:
            for name, meta in SHELL_COMMANDS.items():
                if name.startswith(lowered):
                    yield Completion(name, -len(word), display_meta=meta)

    @staticmethod
    def _choices(word: str, choices: Iterable[str], meta: str) -> Iterator[Completion]:
        for choice in choices:
            if choice.startswith(word) and choice != word:
                yield Completion(choice, -len(word), display_meta=meta)

    def _parameters(self, op: Operation, word: str, given: set[str]) -> Iterator[Completion]:
        key = _KEY.match(word).group(0)
        rest = word[len(key):]
        if rest.startswith("="):  # a value: the schema's enum, or a boolean
            param = op.parameter(key)
            if param is None:
                return
            schema = param.schema
            alternatives = schema.get("anyOf") or [schema]
            values: list[str] = []
            for alt in alternatives:
                values += [str(v) for v in alt.get("enum", [])]
                if alt.get("type") == "boolean":
                    values += ["true", "false"]
            for value in values:
                if value.startswith(rest[1:]):
                    yield Completion(f"{key}={value}", -len(word), display=value)
            return
        if rest:
            return
        for param in op.parameters:
            if param.name in given or not param.name.startswith(key):
                continue
            kind = param.schema.get("type") or "|".join(
                s.get("type", "") for s in param.schema.get("anyOf", []) if s.get("type") != "null")
            meta = f"{param.location} {kind}" + (" required" if param.required else "")
            yield Completion(f"{param.name}=", -len(word), display=f"{param.name}=",
                             display_meta=meta)

    def _query(self, op: Operation, word: str) -> Iterator[Completion]:
        root = self.resource_of(op)
        key = _KEY.match(word).group(0)
        rest = word[len(key):]
        if rest:
            if key == "fields" and rest.startswith("=") and root:
                yield from self._field_list(root, word, rest[1:])
            elif self._is_field(op, root, key):
                yield from self._operators(key, rest, word)
            return
        hops, _, partial = key.rpartition(".")
        path = hops.split(".") if hops else []
        resource = self.walk(root, path) if root else None
        prefix = f"{hops}." if hops else ""
        if not path:
            for name in op.option_names:
                if name.startswith(partial):
                    yield Completion(f"{name}=", -len(word), display=f"{name}=",
                                     display_meta="option")
        if resource is not None:
            for name, kind in self.fields(resource).items():
                if name.startswith(partial) and prefix + name != word:
                    yield Completion(prefix + name, -len(word), display=name,
                                     display_meta=f"{resource} {kind}".strip())
            for name, target in self.joins(resource).items():
                if name.startswith(partial):
                    yield Completion(f"{prefix}{name}.", -len(word), display=f"{name}.",
                                     display_meta=f"→ {target}")
        if not path:
            for name in self.tag_fields:
                if name.startswith(partial) and name != word:
                    yield Completion(name, -len(word), display_meta="tag")
        if self._is_field(op, root, key):
            yield from self._operators(key, "", word)

    def _is_field(self, op: Operation, root: str | None, key: str) -> bool:
        if not key or key in op.option_names:
            return False
        if key in self.tag_fields:
            return True
        hops, _, name = key.rpartition(".")
        resource = self.walk(root, hops.split(".") if hops else []) if root else None
        return resource is not None and name in self.fields(resource)

    def _operators(self, key: str, typed: str, word: str) -> Iterator[Completion]:
        for operator in self.operators:
            if operator.startswith(typed) and operator != typed:
                yield Completion(key + operator, -len(word), display=operator,
                                 display_meta="operator")

    def _field_list(self, root: str, word: str, listed: str) -> Iterator[Completion]:
        done, _, partial = listed.rpartition(",")
        head = word[: len(word) - len(partial)]
        taken = set(done.split(",")) if done else set()
        for name in self.fields(root):
            if name.startswith(partial) and name not in taken:
                yield Completion(head + name, -len(word), display=name, display_meta="field")
