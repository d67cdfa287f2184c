"""Agent tokens: issued once, stored as sha256, checked on every agent call."""
from __future__ import annotations

import hashlib
import hmac
import secrets

from sqlalchemy.orm import Session

from chalicelib.db.models import Host
from chalicelib.errors import PermissionDenied, Unauthenticated

SCHEME = "agent"


def new_token() -> tuple[str, str]:
    """A token and its hash. Hex: it goes on command lines (``--token …``) and into env
    files, where one starting with '-' or holding shell characters would be misread."""
    token = secrets.token_hex(32)
    return token, hashlib.sha256(token.encode()).hexdigest()


def agent_token(headers: dict[str, str]) -> str:
    scheme, _, token = headers.get("authorization", "").partition(" ")
    if scheme.lower() != SCHEME or not token.strip():
        raise Unauthenticated("agent calls need 'Authorization: Agent <token>'")
    return token.strip()


def verify(db: Session, host_uuid: str, token: str) -> Host:
    """The host, if the token is its own; 403 otherwise (also for an unknown host)."""
    host = db.get(Host, host_uuid)
    digest = hashlib.sha256(token.encode()).hexdigest()
    if host is None or host.token_hash is None or \
            not hmac.compare_digest(host.token_hash, digest):
        raise PermissionDenied(f"this agent token is not the token of host {host_uuid}")
    return host
