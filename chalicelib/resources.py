"""What every resource shares: read, list, rename, change state, delete without orphans.

A model says how it takes part through class attributes:

- ``__unique_name_scope__``: ``None`` when names may repeat, else the columns within which a
  name is unique (``()`` for globally unique);
- ``__dependents__``: relationships whose rows forbid deleting it (a zone's clusters), deleted
  first when the caller asks for ``deleteMode=Enforcing``;
- ``__parts__``: relationships deleted along with it (an L3 network's IP ranges);
- ``__state_events__``: the state a ``stateEvent`` moves it to.
"""
from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy import delete, select

from chalicelib.context import Context
from chalicelib.db.base import Base
from chalicelib.db.models import SystemTag, UserTag
from chalicelib.errors import Conflict, InvalidArgument
from chalicelib.identity.ownership import get_visible, visible

M = TypeVar("M", bound=Base)

DEFAULT_STATE_EVENTS = {"enable": "Enabled", "disable": "Disabled"}


def list_resources(ctx: Context, model: type[M], *, limit: int, start: int) -> list[M]:
    stmt = visible(select(model), model, ctx.caller)
    stmt = stmt.order_by(model.create_date, model.uuid).offset(start).limit(limit)
    return list(ctx.session.scalars(stmt))


def ensure_unique_name(ctx: Context, model: type[Base], name: str, scope: dict[str, Any],
                       *, exclude_uuid: str | None = None) -> None:
    if getattr(model, "__unique_name_scope__", None) is None:
        return
    stmt = select(model.uuid).where(model.name == name)
    for column in model.__unique_name_scope__:
        stmt = stmt.where(getattr(model, column) == scope[column])
    if exclude_uuid:
        stmt = stmt.where(model.uuid != exclude_uuid)
    existing = ctx.session.scalars(stmt).first()
    if existing:
        where = " in this " + " and ".join(c.removesuffix("_uuid") for c in
                                           model.__unique_name_scope__) \
            if model.__unique_name_scope__ else ""
        raise Conflict(
            f"a {model.__resource__} named {name!r} already exists{where} ({existing})",
            details={"field": "name", "name": name, "existingUuid": existing},
        )


def add_resource(ctx: Context, resource: M) -> M:
    """Insert a new resource owned by the caller, after the generic checks."""
    resource.account_uuid = ctx.caller.account_uuid
    scope = {c: getattr(resource, c) for c in getattr(type(resource), "__unique_name_scope__",
                                                      None) or ()}
    ensure_unique_name(ctx, type(resource), resource.name, scope)
    ctx.session.add(resource)
    ctx.session.flush()
    return resource


def update_resource(ctx: Context, model: type[M], uuid: str, **fields: Any) -> M:
    resource = get_visible(ctx, model, uuid)
    name = fields.get("name")
    if name is not None and name != resource.name:
        scope = {c: getattr(resource, c) for c in getattr(model, "__unique_name_scope__",
                                                          None) or ()}
        ensure_unique_name(ctx, model, name, scope, exclude_uuid=uuid)
    for key, value in fields.items():
        if value is not None:
            setattr(resource, key, value)
    ctx.session.flush()
    return resource


def change_state(ctx: Context, model: type[M], uuid: str, state_event: str) -> M:
    resource = get_visible(ctx, model, uuid)
    events = getattr(model, "__state_events__", DEFAULT_STATE_EVENTS)
    if state_event not in events:
        raise InvalidArgument(
            f"stateEvent must be one of {', '.join(events)}, got {state_event!r}",
            details={"field": "stateEvent", "choices": list(events)},
        )
    resource.state = events[state_event]
    return resource


def delete_resource(ctx: Context, model: type[Base], uuid: str, *, enforcing: bool) -> None:
    _delete(ctx, get_visible(ctx, model, uuid), enforcing)


def dependents_of(resource: Base) -> dict[str, list[Base]]:
    found: dict[str, list[Base]] = {}
    for relation in getattr(type(resource), "__dependents__", ()):
        for item in getattr(resource, relation):
            found.setdefault(type(item).__resource__, []).append(item)
    return found


def _label(resource: Base) -> str:
    """How a dependent is named in a refusal: its name (or address) and uuid."""
    shown = getattr(resource, "name", None) or getattr(resource, "ip", None)
    return f"{shown} {resource.uuid}" if shown else resource.uuid


def _delete(ctx: Context, resource: Base, enforcing: bool) -> None:
    dependents = dependents_of(resource)
    if dependents and not enforcing:
        listed = "; ".join(
            f"{len(items)} {kind} ({', '.join(_label(i) for i in items[:5])}"
            f"{', ...' if len(items) > 5 else ''})" for kind, items in dependents.items()
        )
        raise Conflict(
            f"{type(resource).__resource__} {resource.name} {resource.uuid} still has {listed}; "
            "delete those first, or delete with deleteMode=Enforcing to delete them with it",
            details={"dependents": {k: [i.uuid for i in v] for k, v in dependents.items()}},
        )
    for items in dependents.values():
        for item in items:
            _delete(ctx, item, enforcing)
    for relation in getattr(type(resource), "__parts__", ()):
        for item in list(getattr(resource, relation)):
            _delete(ctx, item, enforcing)
    for tag_model in (SystemTag, UserTag):
        ctx.session.execute(delete(tag_model).where(tag_model.resource_uuid == resource.uuid))
    ctx.session.delete(resource)
    ctx.session.flush()
