"""Generic ownership: a normal account sees and changes only what it owns; admin sees all."""
from __future__ import annotations

from typing import TypeVar

from sqlalchemy import Select, select

from chalicelib.context import Caller, Context
from chalicelib.db.base import Base
from chalicelib.errors import NotFound, PermissionDenied

M = TypeVar("M", bound=Base)


def visible(stmt: Select, model: type[Base], caller: Caller) -> Select:
    if caller.is_admin:
        return stmt
    return stmt.where(model.account_uuid == caller.account_uuid)


def get_visible(ctx: Context, model: type[M], uuid: str, *, field: str | None = None) -> M:
    """The resource, or NotFound whether it is missing or belongs to someone else."""
    found = ctx.session.scalars(
        visible(select(model).where(model.uuid == uuid), model, ctx.caller)
    ).first()
    if found is None:
        kind = model.__resource__
        details = {"field": field, "uuid": uuid} if field else {"uuid": uuid}
        raise NotFound(f"{kind} {uuid} does not exist", details=details)
    return found


def require_admin(caller: Caller, action: str) -> None:
    if not caller.is_admin:
        raise PermissionDenied(f"{action} needs an admin account")
