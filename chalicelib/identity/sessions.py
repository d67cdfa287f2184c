"""Logging in, bearer tokens, logging out."""
from __future__ import annotations

import hashlib
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import bindparam, delete, select
from sqlalchemy.orm import Session as DbSession

from chalicelib.context import Caller
from chalicelib.db.base import utcnow
from chalicelib.db.models import Account, Session, User
from chalicelib.db.models.identity import ADMIN_ACCOUNT_TYPE
from chalicelib.errors import Unauthenticated
from chalicelib.globalconfig import ConfigDefinition, define, get_value
from chalicelib.identity.passwords import verify_password

SESSION_TIMEOUT = define(ConfigDefinition(
    "identity", "session.timeout", int, 7200,
    "Seconds a session stays valid after login.", min=60, max=31_536_000,
))


@dataclass(frozen=True)
class LoginResult:
    session: Session
    token: str


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _open_session(db: DbSession, account: Account, user: User | None) -> LoginResult:
    if account.state != "Enabled" or (user is not None and user.state != "Enabled"):
        raise Unauthenticated("this account or user is disabled")
    token = secrets.token_urlsafe(32)
    now = utcnow()
    session = Session(
        token_hash=token_hash(token), account_uuid=account.uuid,
        user_uuid=user.uuid if user else None, create_date=now,
        expired_date=now + timedelta(seconds=get_value(db, SESSION_TIMEOUT)),
    )
    db.add(session)
    # Expired sessions are dropped as new ones are made, so the table does not grow forever.
    db.execute(delete(Session).where(Session.expired_date < now))
    db.flush()
    return LoginResult(session, token)


def login_by_account(db: DbSession, account_name: str, password: str) -> LoginResult:
    account = db.scalars(select(Account).where(Account.name == account_name)).first()
    if not verify_password(account.password_hash if account else None, password):
        raise Unauthenticated("wrong account name or password")
    return _open_session(db, account, None)


def login_by_user(db: DbSession, account_name: str, user_name: str, password: str) -> LoginResult:
    row = db.execute(
        select(Account, User).join(User, User.account_uuid == Account.uuid)
        .where(Account.name == account_name, User.name == user_name)
    ).first()
    if not verify_password(row.User.password_hash if row else None, password):
        raise Unauthenticated("wrong account name, user name or password")
    return _open_session(db, row.Account, row.User)


# Built once: every API call runs it, and building a statement costs more than running it.
_SESSION_BY_TOKEN = (
    select(Session.uuid, Session.account_uuid, Session.user_uuid, Session.expired_date,
           Account.type)
    .join(Account, Account.uuid == Session.account_uuid)
    .where(Session.token_hash == bindparam("token_hash"))
)


class _RecentSessions:
    """Sessions validated in the last second, so a burst of calls costs one lookup.

    A logout in this process takes effect at once; in another process (another Lambda) within
    ``TTL`` seconds. Expiry is always checked against the session's own expiry date.
    """

    TTL = 1.0
    LIMIT = 10_000

    def __init__(self) -> None:
        self._entries: dict[str, tuple[float, Caller, datetime]] = {}
        self._lock = threading.Lock()

    def get(self, key: str) -> tuple[Caller, datetime] | None:
        entry = self._entries.get(key)
        if entry is None or time.monotonic() - entry[0] > self.TTL:
            return None
        return entry[1], entry[2]

    def put(self, key: str, caller: Caller, expires: datetime) -> None:
        with self._lock:
            if len(self._entries) >= self.LIMIT:
                self._entries.clear()
            self._entries[key] = (time.monotonic(), caller, expires)

    def forget(self, *, session_uuid: str | None = None, account_uuid: str | None = None) -> None:
        with self._lock:
            self._entries = {
                k: v for k, v in self._entries.items()
                if v[1].session_uuid != session_uuid and v[1].account_uuid != account_uuid
            }


_recent = _RecentSessions()


def authenticate(db: DbSession, token: str, now: datetime | None = None) -> Caller:
    key = token_hash(token)
    known = _recent.get(key)
    if known is None:
        # Core, not ORM: this runs on every call and needs no objects.
        row = db.connection().execute(_SESSION_BY_TOKEN, {"token_hash": key}).first()
        if row is None:
            raise Unauthenticated("the session token is unknown or was logged out; log in again")
        caller = Caller(account_uuid=row.account_uuid, is_admin=row.type == ADMIN_ACCOUNT_TYPE,
                        user_uuid=row.user_uuid, session_uuid=row.uuid)
        known = caller, row.expired_date
        _recent.put(key, *known)
    caller, expires = known
    if expires <= (now or utcnow()):
        raise Unauthenticated("the session has expired; log in again")
    return caller


def logout(db: DbSession, session_uuid: str) -> None:
    db.execute(delete(Session).where(Session.uuid == session_uuid))
    _recent.forget(session_uuid=session_uuid)


def end_sessions_of(db: DbSession, account_uuid: str) -> None:
    db.execute(delete(Session).where(Session.account_uuid == account_uuid))
    _recent.forget(account_uuid=account_uuid)
