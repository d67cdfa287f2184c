"""Commands the control plane sends to host agents, and what became of them."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from chalicelib.db.base import Base, fk_column, utcnow, uuid_column
from chalicelib.db.types import UtcDateTime

COMMAND_STATES = ("Pending", "Sent", "Succeeded", "Failed")


class AgentCommand(Base):
    __tablename__ = "agent_commands"
    __resource__ = "AgentCommand"
    __table_args__ = (
        Index("ix_agent_commands_host_state", "host_uuid", "state", "create_date"),
        # Pending commands oldest first, across hosts (simulated hosts, SQS delivery).
        Index("ix_agent_commands_state_created", "state", "create_date"),
    )

    uuid: Mapped[str] = uuid_column()
    host_uuid: Mapped[str] = fk_column("hosts.uuid", ondelete="CASCADE")
    name: Mapped[str] = mapped_column(String(64), nullable=False)
    args: Mapped[str] = mapped_column(Text, nullable=False)  # JSON
    state: Mapped[str] = mapped_column(String(16), nullable=False, default="Pending")
    result: Mapped[str | None] = mapped_column(Text)  # JSON
    error: Mapped[str | None] = mapped_column(Text)
    create_date: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, nullable=False)
    sent_date: Mapped[datetime | None] = mapped_column(UtcDateTime)
    finished_date: Mapped[datetime | None] = mapped_column(UtcDateTime)
