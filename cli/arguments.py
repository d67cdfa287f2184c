"""``key=value`` pairs → one HTTP request of an operation.

- path parameters fill the path;
- declared query parameters go to the query string;
- for a Query<Resource> call every other pair is a condition, sent as ``q=<key><op><value>``
  (``name~=z%`` → ``q=name~=z%``), except the query options (limit, start, count,
  replyWithCount, sort, fields);
- for other calls the rest is the JSON body, typed by the OpenAPI schema: integers, numbers,
  booleans, arrays as comma-separated values (or JSON text), objects as JSON text."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from cli.spec import Operation, Parameter, close_matches

# Longest first, so ``!?=`` is not read as ``!`` + ``?=``.
OPERATORS = ("=", "!=", ">", ">=", "<", "<=", "?=", "!?=", "~=", "!~=")
_BY_LENGTH = sorted(OPERATORS, key=len, reverse=True)
_KEY = re.compile(r"[A-Za-z0-9_.\-]*")


class UsageError(Exception):
    """The command line is wrong: nothing was sent (exit status 2)."""


@dataclass
class Pair:
    key: str
    operator: str
    value: str

    def __str__(self) -> str:
        return f"{self.key}{self.operator}{self.value}"


@dataclass
class ApiCall:
    method: str
    path: str
    params: list[tuple[str, str]] = field(default_factory=list)
    body: dict[str, Any] | None = None


def split_pair(token: str) -> Pair:
    """``cluster.name!=c1`` → Pair("cluster.name", "!=", "c1")."""
    key = _KEY.match(token).group(0)
    rest = token[len(key):]
    operator = next((op for op in _BY_LENGTH if rest.startswith(op)), None)
    if not key or operator is None:
        raise UsageError(f"'{token}' is not a key=value pair (conditions use one of "
                         f"{' '.join(OPERATORS)})")
    return Pair(key, operator, rest[len(operator):])


def build_call(op: Operation, tokens: list[str]) -> ApiCall:
    pairs = [split_pair(token) for token in tokens]
    path_values: dict[str, str] = {}
    params: list[tuple[str, str]] = []
    body: dict[str, Any] = {}
    for pair in pairs:
        param = op.parameter(pair.key)
        if op.is_query and (param is None or param.location == "query"):
            if pair.key in op.option_names:
                _only_equals(op, pair)
                params.append((pair.key, pair.value))
            elif pair.key == "q" and pair.operator == "=":
                params.append(("q", pair.value))  # a condition written out in full
            else:
                params.append(("q", str(pair)))
            continue
        if param is None:
            raise UsageError(_unknown(op, pair.key))
        _only_equals(op, pair)
        if param.location == "path":
            path_values[param.name] = pair.value
        elif param.location == "body":
            body[param.name] = typed_value(param, pair.value)
        else:
            params.append((param.name, pair.value))
    given = {pair.key for pair in pairs}
    missing = [p.name for p in op.parameters if p.required and p.name not in given]
    if missing:
        raise UsageError(f"{op.name} needs {', '.join(f'{m}=…' for m in missing)}"
                         f"{_valid_list(op)}")
    path = op.path
    for name, value in path_values.items():
        path = path.replace("{" + name + "}", quote(value, safe=""))
    return ApiCall(op.method, path, params, body if op.has_body else None)


def _only_equals(op: Operation, pair: Pair) -> None:
    if pair.operator != "=":
        raise UsageError(f"{op.name}: '{pair}': a parameter takes '=' "
                         f"(operators are for Query conditions)")


def _valid_list(op: Operation) -> str:
    names = []
    for name in op.parameter_names:
        param = op.parameter(name)
        names.append(f"{name}{'' if param is None or not param.required else ' (required)'}")
    if op.is_query:
        names.append("<field><op><value> conditions")
    return "; valid parameters: " + ", ".join(names) if names else "; it takes no parameters"


def _unknown(op: Operation, key: str) -> str:
    near = close_matches(key, op.parameter_names, 3)
    hint = f" (did you mean {' or '.join(near)}?)" if near else ""
    return f"{op.name} has no parameter '{key}'{hint}{_valid_list(op)}"


def typed_value(param: Parameter, text: str) -> Any:
    try:
        return _typed(param.schema, text)
    except ValueError as exc:
        raise UsageError(f"{param.name}={text}: {exc}") from None


def _types(schema: dict[str, Any]) -> list[dict[str, Any]]:
    """The alternatives of a schema (``anyOf``/``oneOf``), ``null`` left out."""
    options = schema.get("anyOf") or schema.get("oneOf")
    if not options:
        return [schema]
    return [s for s in options if s.get("type") != "null"] or [schema]


def _typed(schema: dict[str, Any], text: str) -> Any:
    alternatives = _types(schema)
    if len(alternatives) > 1:
        # Several scalar types: whatever JSON reads the text as, if allowed, else a string.
        kinds = {s.get("type") for s in alternatives}
        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = text
        kind = {bool: "boolean", int: "integer", float: "number", str: "string"}.get(
            type(parsed))
        if kind in kinds or (kind == "integer" and "number" in kinds):
            return parsed
        return text if "string" in kinds else _typed(alternatives[0], text)
    schema = alternatives[0]
    kind = schema.get("type")
    if kind == "integer":
        try:
            return int(text)
        except ValueError:
            raise ValueError("expects an integer") from None
    if kind == "number":
        try:
            return float(text) if any(c in text for c in ".eE") else int(text)
        except ValueError:
            raise ValueError("expects a number") from None
    if kind == "boolean":
        lowered = text.lower()
        if lowered in ("true", "yes", "1", "on"):
            return True
        if lowered in ("false", "no", "0", "off"):
            return False
        raise ValueError("expects true or false")
    if kind == "array":
        if text.startswith("["):
            return _json(text, list, "a JSON array")
        items = schema.get("items", {})
        return [_typed(items, part.strip()) for part in text.split(",") if part.strip()]
    if kind == "object":
        return _json(text, dict, "a JSON object")
    return text


def _json(text: str, kind: type, what: str) -> Any:
    try:
        value = json.loads(text)
    except ValueError:
        raise ValueError(f"expects {what}") from None
    if not isinstance(value, kind):
        raise ValueError(f"expects {what}")
    return value
