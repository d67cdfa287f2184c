"""What a client (the CLI) needs to build and complete queries: every queryable kind with its
operation, path, typed fields and joins, and every kind a join reaches."""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

from chalicelib.db.base import Base
from chalicelib.query.conditions import OPERATORS, TAG_FIELDS
from chalicelib.query.graph import fields_of, joins_of


class QueryOperation(Protocol):
    name: str
    method: str
    path: str
    resource: str | None
    returns_list: bool
    query_params: tuple[str, ...]


def models_by_kind() -> dict[str, type[Base]]:
    return {m.class_.__resource__: m.class_ for m in Base.registry.mappers
            if m.class_.__resource__}


def query_operations(operations: Iterable[QueryOperation]) -> dict[str, QueryOperation]:
    """The Query<Kind> operation of each kind that has one taking conditions (``q``)."""
    return {op.resource: op for op in operations
            if op.resource and op.method == "GET" and op.returns_list
            and op.name == f"Query{op.resource}" and "q" in op.query_params}


def query_metadata(operations: Iterable[QueryOperation]) -> dict[str, Any]:
    """Kinds with a Query operation, and the kinds their joins reach (``operation`` and
    ``path`` are null for those: they are only ever the target of a join)."""
    models = models_by_kind()
    queryable = query_operations(operations)
    pending = [kind for kind in sorted(queryable) if kind in models]
    resources: dict[str, Any] = {}
    while pending:
        kind = pending.pop(0)
        if kind in resources:
            continue
        model = models[kind]
        op = queryable.get(kind)
        joins = {name: join.target.__resource__ for name, join in joins_of(model).items()}
        resources[kind] = {
            "operation": op.name if op else None,
            "path": op.path if op else None,
            "fields": {name: field.type for name, field in fields_of(model).items()},
            "joins": joins,
        }
        pending.extend(target for target in joins.values() if target not in resources)
    return {"resources": dict(sorted(resources.items())), "operators": list(OPERATORS),
            "tagFields": list(TAG_FIELDS)}
