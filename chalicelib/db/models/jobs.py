"""API jobs: every mutating call is a job whose state and result a client polls."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from chalicelib.db.base import Base, fk_column, utcnow, uuid_column
from chalicelib.db.types import UtcDateTime

JOB_STATES = ("Waiting", "Running", "Succeeded", "Failed")


class ApiJob(Base):
    __tablename__ = "api_jobs"
    __resource__ = "ApiJob"
    __hidden_fields__ = frozenset({"request"})
    __table_args__ = (Index("ix_api_jobs_signature_state", "signature", "state", "created_at"),)

    uuid: Mapped[str] = uuid_column()
    api_name: Mapped[str] = mapped_column(String(128), nullable=False, index=True)
    state: Mapped[str] = mapped_column(String(32), nullable=False, default="Waiting", index=True)
    account_uuid: Mapped[str] = fk_column("accounts.uuid")
    resource_uuid: Mapped[str | None] = mapped_column(String(32), index=True)
    # The operation queue it waits in (vm:<uuid>, host:<uuid>, job:<its own uuid> ...).
    signature: Mapped[str] = mapped_column(String(255), nullable=False, default="")
    request: Mapped[str] = mapped_column(Text, nullable=False)  # validated request, JSON
    result: Mapped[str | None] = mapped_column(Text)  # JSON
    error: Mapped[str | None] = mapped_column(Text)  # JSON {"code", "message", "details"}
    # Jobs that run a flow: where it is (JSON FlowProgress view), and the context it started
    # with (what a restart needs to roll back a flow the crash cut off).
    progress: Mapped[str | None] = mapped_column(Text)
    flow_context: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, nullable=False)
    started_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    last_op_date: Mapped[datetime] = mapped_column(
        UtcDateTime, default=utcnow, onupdate=utcnow, nullable=False
    )
