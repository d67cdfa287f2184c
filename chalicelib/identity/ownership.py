"""Generic ownership: a normal account sees and changes only what it owns; admin sees all."""
from __future__ import annotations

from functools import cache
from typing import TypeVar

from sqlalchemy import Select, bindparam, select

from chalicelib.context import Caller, Context
from chalicelib.db.base import Base
from chalicelib.errors import NotFound, PermissionDenied

M = TypeVar("M", bound=Base)


def visible(stmt: Select, model: type[Base], caller: Caller) -> Select:
    if caller.is_admin:
        return stmt
    return stmt.where(model.account_uuid == caller.account_uuid)


@cache
def _by_uuid(model: type[Base], admin: bool) -> Select:
    stmt = select(model).where(model.uuid == bindparam("uuid"))
    if not admin:
        stmt = stmt.where(model.account_uuid == bindparam("account_uuid"))
    return stmt


def get_visible(ctx: Context, model: type[M], uuid: str, *, field: str | None = None) -> M:
    """The resource, or NotFound whether it is missing or belongs to someone else."""
    params = {"uuid": uuid}
    if not ctx.caller.is_admin:
        params["account_uuid"] = ctx.caller.account_uuid
    found = ctx.session.scalars(_by_uuid(model, ctx.caller.is_admin), params).first()
    if found is None:
        kind = model.__resource__
        details = {"field": field, "uuid": uuid} if field else {"uuid": uuid}
        raise NotFound(f"{kind} {uuid} does not exist", details=details)
    return found


def require_admin(caller: Caller, action: str) -> None:
    if not caller.is_admin:
        raise PermissionDenied(f"{action} needs an admin account")
