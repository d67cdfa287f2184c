"""Tags attach key/values to any resource without a schema change.

System tags are validated by the plugin that owns them (``hostname::{hostname}``); user tags
are free text for people.
"""
from __future__ import annotations

from sqlalchemy import Boolean, String
from sqlalchemy.orm import Mapped, mapped_column

from chalicelib.db.base import Base, Timestamps, fk_column, uuid_column


class _Tag(Timestamps):
    uuid: Mapped[str] = uuid_column()
    resource_uuid: Mapped[str] = mapped_column(String(32), nullable=False, index=True)
    resource_type: Mapped[str] = mapped_column(String(64), nullable=False)
    tag: Mapped[str] = mapped_column(String(2048), nullable=False)
    type: Mapped[str] = mapped_column(String(32), nullable=False, default="System")


class SystemTag(_Tag, Base):
    __tablename__ = "system_tags"
    __resource__ = "SystemTag"

    inherent: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    account_uuid: Mapped[str] = fk_column("accounts.uuid")


class UserTag(_Tag, Base):
    __tablename__ = "user_tags"
    __resource__ = "UserTag"

    account_uuid: Mapped[str] = fk_column("accounts.uuid")
