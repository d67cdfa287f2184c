"""Creating and changing accounts and users; the admin account on first start."""
from __future__ import annotations

import secrets
from collections.abc import Callable

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session as DbSession

from chalicelib.context import Context
from chalicelib.db.base import Base
from chalicelib.db.models import Account, ApiJob, User
from chalicelib.errors import Conflict, InvalidArgument, NotFound
from chalicelib.globalconfig import ConfigDefinition, define, get_value
from chalicelib.identity.ownership import get_visible, require_admin
from chalicelib.identity.passwords import hash_password
from chalicelib.identity.sessions import end_sessions_of

ADMIN_NAME = "admin"

PASSWORD_MIN_LENGTH = define(ConfigDefinition(
    "identity", "password.minLength", int, 8,
    "Shortest password an account or user may set.", min=1, max=128,
))


def check_password(db: DbSession, password: str) -> None:
    minimum = get_value(db, PASSWORD_MIN_LENGTH)
    if len(password) < minimum:
        raise InvalidArgument(
            f"password must be at least {minimum} characters (global config "
            f"identity.password.minLength)", details={"field": "password"},
        )


def _unique_account_name(db: DbSession, name: str, *, exclude: str | None = None) -> None:
    stmt = select(Account.uuid).where(Account.name == name)
    if exclude:
        stmt = stmt.where(Account.uuid != exclude)
    if db.scalars(stmt).first():
        raise Conflict(f"an account named {name!r} already exists",
                       details={"field": "name", "name": name})


def create_account(ctx: Context, *, name: str, password: str, type: str = "Normal",
                   description: str | None = None) -> Account:
    require_admin(ctx.caller, "CreateAccount")
    _unique_account_name(ctx.session, name)
    check_password(ctx.session, password)
    account = Account(name=name, password_hash=hash_password(password), type=type,
                      description=description, account_uuid=ctx.caller.account_uuid)
    ctx.session.add(account)
    return account


def update_account(ctx: Context, uuid: str, *, name: str | None = None,
                   description: str | None = None, password: str | None = None) -> Account:
    account = get_account(ctx, uuid)
    _change(ctx, account, name, description, password,
            lambda new: _unique_account_name(ctx.session, new, exclude=uuid))
    return account


def _change(ctx: Context, target: Account | User, name: str | None, description: str | None,
            password: str | None, name_is_free: Callable[[str], None]) -> None:
    if name is not None and name != target.name:
        name_is_free(name)
        target.name = name
    if description is not None:
        target.description = description
    if password is not None:
        check_password(ctx.session, password)
        target.password_hash = hash_password(password)


def get_account(ctx: Context, uuid: str) -> Account:
    """An account is visible to admin and to itself."""
    account = ctx.session.get(Account, uuid)
    if account is None or not (ctx.caller.is_admin or uuid == ctx.caller.account_uuid):
        raise NotFound(f"Account {uuid} does not exist", details={"uuid": uuid})
    return account


def delete_account(ctx: Context, uuid: str) -> None:
    require_admin(ctx.caller, "DeleteAccount")
    account = get_account(ctx, uuid)
    if account.name == ADMIN_NAME:
        raise Conflict("the admin account cannot be deleted")
    owned = owned_resource_counts(ctx.session, uuid)
    if owned:
        raise Conflict(
            f"account {account.name} still owns resources: "
            + ", ".join(f"{count} {kind}" for kind, count in owned.items())
            + "; delete them first", details={"owned": owned},
        )
    unfinished = ctx.session.scalar(select(func.count()).select_from(ApiJob).where(
        ApiJob.account_uuid == uuid, ApiJob.state.in_(("Waiting", "Running"))))
    if unfinished:
        raise Conflict(f"account {account.name} still has {unfinished} unfinished job(s); "
                       "retry when they are done", details={"unfinishedJobs": unfinished})
    # Its finished jobs are its history: they go with it (they reference it).
    ctx.session.execute(delete(ApiJob).where(ApiJob.account_uuid == uuid))
    # Accounts it created pass to the admin deleting it rather than being orphaned.
    ctx.session.execute(update(Account).where(Account.account_uuid == uuid)
                        .values(account_uuid=ctx.caller.account_uuid))
    end_sessions_of(ctx.session, uuid)
    for user in account.users:
        ctx.session.delete(user)
    ctx.session.delete(account)


def owned_resource_counts(db: DbSession, account_uuid: str) -> dict[str, int]:
    counts = {}
    for mapper in Base.registry.mappers:
        model = mapper.class_
        if model in (Account, User) or "account_uuid" not in mapper.columns or \
                not model.__resource__ or model.__resource__ in ("Session", "ApiJob"):
            continue
        count = db.scalar(select(func.count()).select_from(model)
                          .where(model.account_uuid == account_uuid))
        if count:
            counts[model.__resource__] = count
    return counts


def create_user(ctx: Context, *, name: str, password: str, description: str | None = None) -> User:
    _unique_user_name(ctx.session, ctx.caller.account_uuid, name)
    check_password(ctx.session, password)
    user = User(name=name, password_hash=hash_password(password), description=description,
                account_uuid=ctx.caller.account_uuid)
    ctx.session.add(user)
    return user


def update_user(ctx: Context, uuid: str, *, name: str | None = None,
                description: str | None = None, password: str | None = None) -> User:
    user = get_visible(ctx, User, uuid, field="uuid")
    _change(ctx, user, name, description, password,
            lambda new: _unique_user_name(ctx.session, user.account_uuid, new))
    return user


def _unique_user_name(db: DbSession, account_uuid: str, name: str) -> None:
    if db.scalars(select(User.uuid).where(User.account_uuid == account_uuid,
                                          User.name == name)).first():
        raise Conflict(f"a user named {name!r} already exists in this account",
                       details={"field": "name", "name": name})


def ensure_admin(db: DbSession, password: str | None) -> str | None:
    """Create the admin account if missing. Returns the generated password, if one was made."""
    if db.scalars(select(Account.uuid).where(Account.name == ADMIN_NAME)).first():
        return None
    generated = None
    if not password:
        password = generated = secrets.token_urlsafe(12)
    db.add(Account(name=ADMIN_NAME, type="SystemAdmin", password_hash=hash_password(password),
                   description="built-in administrator"))
    return generated
