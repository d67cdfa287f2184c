"""A query: conditions, ownership, sort, paging, count and a projection of the inventories."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, func, select

from chalicelib.context import Caller, Context
from chalicelib.db.base import Base
from chalicelib.db.inventory import to_inventory
from chalicelib.errors import InvalidArgument
from chalicelib.query.compiler import compile_condition, owner_criteria
from chalicelib.query.conditions import parse_conditions
from chalicelib.query.graph import fields_of

DEFAULT_LIMIT = 1000
MAX_LIMIT = 100_000


@dataclass(frozen=True)
class QuerySpec:
    conditions: tuple[str, ...] = ()
    limit: int = DEFAULT_LIMIT
    start: int = 0
    count: bool = False
    reply_with_count: bool = False
    sort: str | None = None  # +field or -field (a leading space is a '+' a URL decoded)
    fields: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Plan:
    rows: Select  # the page of rows
    total: Select  # how many rows match in all


def _sort(model: type[Base], sort: str | None) -> list[Any]:
    default = [model.create_date, model.uuid] if hasattr(model, "create_date") else [model.uuid]
    if sort is None or not sort.strip():
        return default
    text = sort.strip() if sort[:1] in (" ", "+", "-") else sort
    descending = text.startswith("-")
    name = text.lstrip("+-")
    field = fields_of(model).get(name)
    if field is None:
        valid = sorted(f"{sign}{f}" for f in fields_of(model) for sign in "+-")
        raise InvalidArgument(
            f"sort: {model.__resource__} has no field {name!r} to sort by; use +field or -field",
            details={"field": "sort", "sort": sort, "valid": valid})
    column = getattr(model, field.attribute)
    return [column.desc() if descending else column.asc(), model.uuid]


def _fields(model: type[Base], fields: tuple[str, ...] | None) -> tuple[str, ...] | None:
    if fields is None:
        return None
    known = fields_of(model)
    for name in fields:
        if name not in known:
            raise InvalidArgument(
                f"fields: {model.__resource__} has no field {name!r}",
                details={"field": "fields", "name": name, "valid": sorted(known)})
    return fields


def compile_query(model: type[Base], spec: QuerySpec, caller: Caller | None) -> Plan:
    """The statements a query runs, for ``caller`` (None: no ownership rule, e.g. a bench)."""
    criteria = [*owner_criteria(model, model, caller),
                *(compile_condition(model, c, caller) for c in parse_conditions(spec.conditions))]
    rows = (select(model).where(*criteria).order_by(*_sort(model, spec.sort))
            .offset(spec.start).limit(spec.limit))
    total = select(func.count()).select_from(model).where(*criteria)
    return Plan(rows, total)


def query(ctx: Context, model: type[Base], spec: QuerySpec) -> dict[str, Any]:
    """``{"inventories": [...]}``, with ``"total"`` if asked; only ``{"total": n}`` for a
    count. Each inventory as the API renders it, cut to ``spec.fields`` if given."""
    fields = _fields(model, spec.fields)
    plan = compile_query(model, spec, ctx.caller)
    if spec.count:
        return {"total": ctx.session.scalar(plan.total)}
    inventories = [to_inventory(row) for row in ctx.session.scalars(plan.rows)]
    if fields is not None:
        wanted = ("uuid", *fields)
        inventories = [{k: inv[k] for k in wanted if k in inv} for inv in inventories]
    reply: dict[str, Any] = {"inventories": inventories}
    if spec.reply_with_count:
        reply["total"] = ctx.session.scalar(plan.total)
    return reply

