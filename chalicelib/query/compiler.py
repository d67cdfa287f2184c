"""Conditions to SQL. Every join hop is a semi-join, ``<key> IN (SELECT <key> FROM <next>
WHERE ...)``, uncorrelated, so a multi-valued path never duplicates a row and each hop can use
the index on its key; a plugin's join (an arbitrary ``on``) is a correlated EXISTS. Values are
always bound parameters; names only ever select attributes of the mapped models."""
from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, exists, inspect, or_, select
from sqlalchemy.orm import aliased
from sqlalchemy.sql import operators

from chalicelib.context import Caller
from chalicelib.db.base import Base
from chalicelib.db.models import Account, SystemTag, UserTag
from chalicelib.query.conditions import OPERATORS, TAG_FIELDS, Condition, invalid
from chalicelib.query.graph import Field, Join, fields_of, joins_of, kind_of

TAG_MODELS = {"__systemTag__": SystemTag, "__userTag__": UserTag}
ORDERED = {"integer", "number", "datetime", "string"}
TAG_OPERATORS = ["=", "!=", "?=", "!?=", "~=", "!~="]


def valid_names(model: type[Base]) -> list[str]:
    """What may follow a dot on ``model``: its fields, the tag fields and its joins."""
    return sorted({*fields_of(model), *TAG_FIELDS, *joins_of(model)})


def operators_for(field: Field) -> list[str]:
    if field.type == "boolean":
        return ["=", "!=", "?=", "!?="]
    if field.type == "string":
        return list(OPERATORS)
    return [op for op in OPERATORS if op not in ("~=", "!~=")]


def owner_criteria(entity: Any, model: type[Base], caller: Caller | None) -> list[ColumnElement]:
    """A normal account sees only its own rows of any kind that has an owner; admin all."""
    if caller is None or caller.is_admin:
        return []
    if model is Account:
        return [entity.uuid == caller.account_uuid]
    if "account_uuid" in inspect(model).column_attrs:
        return [entity.account_uuid == caller.account_uuid]
    return []


def compile_condition(model: type[Base], condition: Condition,
                      caller: Caller | None) -> ColumnElement[bool]:
    hops: list[Join] = []
    current = model
    for segment in condition.joins:
        join = joins_of(current).get(segment)
        if join is None:
            raise invalid(condition.text, f"{kind_of(current)} has no join {segment!r}",
                          valid_names(current))
        hops.append(join)
        current = join.target
    return _walk(model, model, hops, condition, caller)


def _walk(entity: Any, model: type[Base], hops: list[Join], condition: Condition,
          caller: Caller | None) -> ColumnElement[bool]:
    if not hops:
        return _predicate(entity, model, condition)
    join = hops[0]
    target = aliased(join.target) if join.on is not None else join.target
    criteria = [_walk(target, join.target, hops[1:], condition, caller),
                *owner_criteria(target, join.target, caller)]
    return _hop(entity, join, target, criteria)


def _attribute(entity: Any, model: type[Base], column: Any) -> Any:
    return getattr(entity, inspect(model).get_property_by_column(column).key)


def _hop(entity: Any, join: Join, target: Any, criteria: list[ColumnElement]) -> ColumnElement:
    if join.on is not None:
        return exists(select(1).select_from(target).where(join.on(entity, target), *criteria)
                      .correlate(entity))
    rel = join.relationship
    assert rel is not None
    if rel.secondary is not None and len(rel.synchronize_pairs) == 1 \
            and len(rel.secondary_synchronize_pairs) == 1:
        (local, via_local), = rel.synchronize_pairs
        (remote, via_remote), = rel.secondary_synchronize_pairs
        keys = (select(via_local).select_from(rel.secondary)
                .join(join.target, _attribute(join.target, join.target, remote) == via_remote)
                .where(*criteria).correlate(None))
        return _attribute(entity, join.source, local).in_(keys)
    pairs = rel.local_remote_pairs or []
    if rel.secondary is None and len(pairs) == 1 \
            and getattr(rel.primaryjoin, "operator", None) is operators.eq:
        (local, remote), = pairs
        keys = select(_attribute(join.target, join.target, remote)).where(*criteria)
        return _attribute(entity, join.source, local).in_(keys.correlate(None))
    # Anything fancier (composite keys, extra join criteria): the ORM's own EXISTS.
    attr = getattr(entity, rel.key)
    return attr.any(and_(*criteria)) if rel.uselist else attr.has(and_(*criteria))


def _predicate(entity: Any, model: type[Base], condition: Condition) -> ColumnElement[bool]:
    if condition.field in TAG_MODELS:
        return _tag_predicate(entity, condition)
    field = fields_of(model).get(condition.field)
    if field is None:
        raise invalid(condition.text, f"{kind_of(model)} has no field {condition.field!r}",
                      valid_names(model))
    allowed = operators_for(field)
    if condition.op not in allowed:
        raise invalid(condition.text, f"{condition.op!r} does not apply to {field.type} "
                      f"field {field.name!r}", allowed)
    column = getattr(entity, field.attribute)
    if condition.is_null_test:
        return column.is_(None) if condition.op == "=" else column.is_not(None)
    return _compare(column, field, condition)


def _compare(column: Any, field: Field, condition: Condition) -> ColumnElement[bool]:
    op = condition.op
    if op in ("?=", "!?="):
        values = [typed_value(field, v, condition) for v in condition.values]
        test = column.in_(values)
    elif op in ("~=", "!~="):
        test = column.like(condition.value)
    else:
        value = typed_value(field, condition.value, condition)
        test = {"=": column.__eq__, "!=": column.__eq__, ">": column.__gt__,
                ">=": column.__ge__, "<": column.__lt__, "<=": column.__le__}[op](value)
    if not op.startswith("!"):
        return test
    # "not equal / not in / not like" also holds for a row with no value at all.
    return or_(~test, column.is_(None)) if field.nullable else ~test


def _tag_predicate(entity: Any, condition: Condition) -> ColumnElement[bool]:
    if condition.op not in TAG_OPERATORS:
        raise invalid(condition.text, f"{condition.op!r} does not apply to tags", TAG_OPERATORS)
    tag = TAG_MODELS[condition.field]
    if condition.op in ("=", "!="):
        test = tag.tag == condition.value
    elif condition.op in ("?=", "!?="):
        test = tag.tag.in_(condition.values)
    else:
        test = tag.tag.like(condition.value)
    tagged = entity.uuid.in_(select(tag.resource_uuid).where(test).correlate(None))
    # A negative tag condition: the resource has no such tag.
    return ~tagged if condition.op.startswith("!") else tagged


def typed_value(field: Field, raw: str, condition: Condition) -> Any:
    try:
        return _convert(field.type, raw)
    except (ValueError, OverflowError):
        raise invalid(condition.text, f"{raw!r} is not a valid {field.type} for "
                      f"{field.name!r}", [EXAMPLES[field.type]]) from None


EXAMPLES = {"integer": "an integer, e.g. 42", "number": "a number, e.g. 1.5",
            "boolean": "true or false", "datetime": "ISO-8601, e.g. 2024-05-01T12:00:00Z",
            "string": "any text"}


def _convert(kind: str, raw: str) -> Any:
    if kind == "integer":
        number = int(raw.strip())
        if not -2**63 <= number < 2**63:  # what a database integer column holds
            raise ValueError(raw)
        return number
    if kind == "number":
        number = float(raw)
        if not math.isfinite(number):
            raise ValueError(raw)
        return number
    if kind == "boolean":
        lowered = raw.strip().lower()
        if lowered not in ("true", "false"):
            raise ValueError(raw)
        return lowered == "true"
    if kind == "datetime":
        text = raw.strip()
        if "T" in text and " " in text:  # a '+' offset that a query string turned into ' '
            text = text.replace(" ", "+")
        moment = datetime.fromisoformat(text)
        if moment.tzinfo is not None:
            moment = moment.astimezone(UTC).replace(tzinfo=None)
        return moment
    return raw
