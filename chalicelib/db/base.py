"""Declarative base and the columns every Aerie resource has."""
from __future__ import annotations

import uuid as uuid_module
from datetime import UTC, datetime

from sqlalchemy import ForeignKey, MetaData, String
from sqlalchemy.orm import DeclarativeBase, Mapped, declared_attr, mapped_column

from chalicelib.db.types import UtcDateTime

# Deterministic constraint names keep Alembic diffs and MySQL/SQLite schemas comparable.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

UUID_LENGTH = 32


def new_uuid() -> str:
    """ZStack-style resource uuid: 32 lowercase hex digits, no dashes."""
    return uuid_module.uuid4().hex


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)

    # Wire names of columns that never leave the control plane (secrets).
    __hidden_fields__: frozenset[str] = frozenset()
    # Resource kind as the API names it, e.g. "Zone"; set on every resource model.
    __resource__: str = ""


def uuid_column(**kwargs) -> Mapped[str]:
    return mapped_column(String(UUID_LENGTH), primary_key=True, default=new_uuid, **kwargs)


def fk_column(target: str, *, nullable: bool = False, ondelete: str | None = None) -> Mapped:
    return mapped_column(
        String(UUID_LENGTH), ForeignKey(target, ondelete=ondelete), nullable=nullable, index=True
    )


class Timestamps:
    create_date: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, nullable=False)
    last_op_date: Mapped[datetime] = mapped_column(
        UtcDateTime, default=utcnow, onupdate=utcnow, nullable=False
    )


class Resource(Timestamps):
    """uuid, name, description, createDate, lastOpDate and an owner account."""

    uuid: Mapped[str] = uuid_column()
    name: Mapped[str] = mapped_column(String(255), nullable=False, index=True)
    description: Mapped[str | None] = mapped_column(String(2048))

    @declared_attr
    def account_uuid(cls) -> Mapped[str]:  # noqa: N805 - declared_attr takes the class
        return fk_column("accounts.uuid")
