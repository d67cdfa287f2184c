"""Accounts own resources; users log in under an account; sessions carry a bearer token."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from chalicelib.db.base import UUID_LENGTH, Base, Resource, Timestamps, fk_column, uuid_column
from chalicelib.db.types import UtcDateTime

ADMIN_ACCOUNT_TYPE = "SystemAdmin"
ACCOUNT_TYPES = (ADMIN_ACCOUNT_TYPE, "Normal")


class Account(Timestamps, Base):
    __tablename__ = "accounts"
    __resource__ = "Account"
    __hidden_fields__ = frozenset({"passwordHash"})

    uuid: Mapped[str] = uuid_column()
    name: Mapped[str] = mapped_column(String(255), nullable=False, unique=True)
    description: Mapped[str | None] = mapped_column(String(2048))
    type: Mapped[str] = mapped_column(String(32), nullable=False, default="Normal")
    state: Mapped[str] = mapped_column(String(32), nullable=False, default="Enabled")
    password_hash: Mapped[str] = mapped_column(String(255), nullable=False)
    # The account that created this one; NULL only for the built-in admin.
    account_uuid: Mapped[str | None] = mapped_column(
        String(UUID_LENGTH), ForeignKey("accounts.uuid"), index=True
    )

    users: Mapped[list[User]] = relationship(
        back_populates="account", foreign_keys="User.account_uuid"
    )

    @property
    def is_admin(self) -> bool:
        return self.type == ADMIN_ACCOUNT_TYPE


class User(Resource, Base):
    __tablename__ = "users"
    __resource__ = "User"
    __hidden_fields__ = frozenset({"passwordHash"})
    __table_args__ = (UniqueConstraint("account_uuid", "name"),)

    state: Mapped[str] = mapped_column(String(32), nullable=False, default="Enabled")
    password_hash: Mapped[str] = mapped_column(String(255), nullable=False)

    account: Mapped[Account] = relationship(
        back_populates="users", foreign_keys="User.account_uuid"
    )


class Session(Base):
    __tablename__ = "sessions"
    __resource__ = "Session"
    __hidden_fields__ = frozenset({"tokenHash"})

    uuid: Mapped[str] = uuid_column()
    # sha256 of the bearer token: tokens are 256-bit random, so a fast hash is enough.
    token_hash: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    account_uuid: Mapped[str] = fk_column("accounts.uuid", ondelete="CASCADE")
    user_uuid: Mapped[str | None] = fk_column("users.uuid", nullable=True, ondelete="CASCADE")
    expired_date: Mapped[datetime] = mapped_column(UtcDateTime, nullable=False, index=True)
    create_date: Mapped[datetime] = mapped_column(UtcDateTime, nullable=False)
