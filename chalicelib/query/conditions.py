"""Parsing ``q`` conditions: ``<path><operator><value>``.

The path is ``[A-Za-z0-9_.]+``: join segments separated by dots, then a field (or a tag
field, ``__systemTag__`` / ``__userTag__``). The operator is the longest match at the first
character that cannot be part of a path.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from chalicelib.errors import InvalidArgument

OPERATORS = ("=", "!=", ">", ">=", "<", "<=", "?=", "!?=", "~=", "!~=")
TAG_FIELDS = ("__systemTag__", "__userTag__")
NULL = "null"

_BY_LENGTH = sorted(OPERATORS, key=len, reverse=True)
_CONDITION = re.compile(
    r"(?P<path>[A-Za-z0-9_.]+)(?P<op>" + "|".join(re.escape(o) for o in _BY_LENGTH)
    + r")(?P<value>.*)", re.DOTALL)
_SEGMENT = re.compile(r"[A-Za-z0-9_]+")


@dataclass(frozen=True)
class Condition:
    text: str  # as the caller wrote it, for error messages
    joins: tuple[str, ...]  # the join segments before the field
    field: str
    op: str
    value: str

    @property
    def is_null_test(self) -> bool:
        return self.op in ("=", "!=") and self.value == NULL

    @property
    def values(self) -> list[str]:
        """The comma-separated values of ``?=`` and ``!?=``."""
        return self.value.split(",")


def invalid(condition: str, message: str, valid: list[str]) -> InvalidArgument:
    return InvalidArgument(
        f"q: {message} in {condition!r}; valid here: {', '.join(valid) or 'nothing'}",
        details={"field": "q", "condition": condition, "valid": valid},
    )


def parse_condition(text: str) -> Condition:
    match = _CONDITION.fullmatch(text)
    if match is None:
        raise invalid(text, "not a condition of the form <field><operator><value> (the field "
                      "is letters, digits, '_' and '.')", list(OPERATORS))
    segments = match["path"].split(".")
    if not all(_SEGMENT.fullmatch(s) for s in segments):
        raise invalid(text, f"{match['path']!r} has an empty path segment", list(OPERATORS))
    return Condition(text, tuple(segments[:-1]), segments[-1], match["op"], match["value"])


def parse_conditions(texts: list[str] | tuple[str, ...]) -> list[Condition]:
    return [parse_condition(t) for t in texts]
