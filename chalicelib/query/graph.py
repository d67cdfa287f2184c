"""The join graph, derived from the SQLAlchemy mappers: a model's queryable fields and the
joins leading out of it. A new model with relationships is queryable and joinable with no
query code; ``add_join`` adds a join the ORM does not have (a plugin's)."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import BigInteger, Boolean, Float, Integer, Numeric, inspect
from sqlalchemy.orm import RelationshipProperty, configure_mappers
from sqlalchemy.sql.elements import ColumnElement

from chalicelib.db.base import Base
from chalicelib.db.inventory import camel
from chalicelib.db.types import UtcDateTime

# on(source, target) -> the condition that relates a source row to a target row; both are
# entities (the model or an alias of it) to build the expression from.
JoinCondition = Callable[[Any, Any], ColumnElement[bool]]


@dataclass(frozen=True)
class Field:
    name: str  # camelCase, as in the inventory
    attribute: str  # the model's attribute
    type: str  # string, integer, number, boolean, datetime
    nullable: bool


@dataclass(frozen=True)
class Join:
    name: str
    source: type[Base]
    target: type[Base]
    relationship: RelationshipProperty | None = None
    on: JoinCondition | None = None


_plugin_joins: dict[type[Base], dict[str, Join]] = {}
_joins_cache: dict[type[Base], dict[str, Join]] = {}
_fields_cache: dict[type[Base], dict[str, Field]] = {}


def kind_of(model: type[Base]) -> str:
    return model.__resource__


def singular(kind: str) -> str:
    return kind[:1].lower() + kind[1:]


def field_type(column: Any) -> str:
    kind = column.type
    if isinstance(kind, Boolean):
        return "boolean"
    if isinstance(kind, (Integer, BigInteger)):
        return "integer"
    if isinstance(kind, (Float, Numeric)):
        return "number"
    if isinstance(kind, UtcDateTime):
        return "datetime"
    return "string"


def fields_of(model: type[Base]) -> dict[str, Field]:
    """Every column of the model by its inventory name, secrets left out."""
    found = _fields_cache.get(model)
    if found is None:
        hidden = model.__hidden_fields__
        found = {}
        for attr in inspect(model).column_attrs:
            name = camel(attr.key)
            column = attr.columns[0]
            if name not in hidden:
                found[name] = Field(name, attr.key, field_type(column), bool(column.nullable))
        _fields_cache[model] = found
    return found


def joins_of(model: type[Base]) -> dict[str, Join]:
    """The joins out of ``model`` by name: each relationship by its camelCase name, and by the
    singular name of its target's kind where only one relationship leads to that kind."""
    found = _joins_cache.get(model)
    if found is None:
        found = _build_joins(model)
        _joins_cache[model] = found
    return found


def _build_joins(model: type[Base]) -> dict[str, Join]:
    configure_mappers()
    joins: dict[str, Join] = {}
    for rel in inspect(model).relationships:
        target = rel.mapper.class_
        if kind_of(target):
            joins[camel(rel.key)] = Join(camel(rel.key), model, target, relationship=rel)
    joins.update(_plugin_joins.get(model, {}))
    by_kind: dict[str, list[Join]] = {}
    for join in joins.values():
        by_kind.setdefault(kind_of(join.target), []).append(join)
    for kind, candidates in by_kind.items():
        name = singular(kind)
        if len(candidates) == 1 and name not in joins:
            joins[name] = candidates[0]
    return dict(sorted(joins.items()))


def add_join(from_model: type[Base], name: str, to_model: type[Base], *,
             on: JoinCondition) -> None:
    """Make ``<name>`` a join from ``from_model`` to ``to_model``, relating rows by ``on``."""
    if not kind_of(to_model):
        raise ValueError(f"{to_model.__name__} is not a resource model")
    existing = joins_of(from_model).get(name)
    if existing is not None and existing.relationship is not None:
        raise ValueError(f"{kind_of(from_model)} already has a join named {name!r}")
    _plugin_joins.setdefault(from_model, {})[name] = Join(name, from_model, to_model, on=on)
    _joins_cache.clear()


def remove_join(from_model: type[Base], name: str) -> None:
    """Undo ``add_join`` (a plugin being removed)."""
    _plugin_joins.get(from_model, {}).pop(name, None)
    _joins_cache.clear()
