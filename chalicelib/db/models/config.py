"""Global configs: operator-tunable settings, defined in code, values kept here."""
from __future__ import annotations

from sqlalchemy import String, Text
from sqlalchemy.orm import Mapped, mapped_column

from chalicelib.db.base import Base, Timestamps


class GlobalConfig(Timestamps, Base):
    __tablename__ = "global_configs"
    __resource__ = "GlobalConfig"

    category: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    description: Mapped[str | None] = mapped_column(String(2048))
    default_value: Mapped[str] = mapped_column(Text, nullable=False)
    value: Mapped[str] = mapped_column(Text, nullable=False)
