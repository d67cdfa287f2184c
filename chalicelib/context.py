"""Who is calling, and the transaction their operation runs in."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session

from chalicelib.db.database import Database

if TYPE_CHECKING:
    from chalicelib.runtime.base import AgentChannel


@dataclass(frozen=True)
class Caller:
    account_uuid: str
    is_admin: bool
    user_uuid: str | None = None
    session_uuid: str | None = None


@dataclass
class Context:
    session: Session | None
    caller: Caller
    # Only for operations that run outside a transaction and open their own short ones.
    database: Database | None = None
    # How commands reach host agents in this runtime (for calls agents make about that).
    agents: AgentChannel | None = None
