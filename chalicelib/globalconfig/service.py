"""Reading, updating and resetting global configs."""
from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from chalicelib.db.models import GlobalConfig
from chalicelib.errors import NotFound
from chalicelib.globalconfig.definitions import ConfigDefinition, definitions, lookup


def seed(session: Session) -> None:
    """Insert every defined config that the database lacks; refresh descriptions and defaults."""
    existing = {(c.category, c.name): c for c in session.scalars(select(GlobalConfig))}
    for definition in definitions():
        row = existing.get((definition.category, definition.name))
        default = definition.render(definition.default)
        if row is None:
            session.add(GlobalConfig(
                category=definition.category, name=definition.name,
                description=definition.description, default_value=default, value=default,
            ))
        elif (row.description, row.default_value) != (definition.description, default):
            row.description, row.default_value = definition.description, default


def get_value(session: Session, definition: ConfigDefinition) -> Any:
    row = session.get(GlobalConfig, (definition.category, definition.name))
    return definition.parse(row.value) if row is not None else definition.default


def definition_of(category: str, name: str) -> ConfigDefinition:
    definition = lookup(category, name)
    if definition is None:
        raise NotFound(
            f"global config {category}.{name} does not exist",
            details={"category": category, "name": name},
        )
    return definition


def config_row(session: Session, definition: ConfigDefinition) -> GlobalConfig:
    row = session.get(GlobalConfig, (definition.category, definition.name))
    if row is None:
        seed(session)
        session.flush()
        row = session.get(GlobalConfig, (definition.category, definition.name))
    return row


def update_config(session: Session, category: str, name: str, value: str) -> GlobalConfig:
    definition = definition_of(category, name)
    row = config_row(session, definition)
    row.value = definition.render(definition.parse(value))
    return row


def reset_config(session: Session, category: str, name: str) -> GlobalConfig:
    definition = definition_of(category, name)
    row = config_row(session, definition)
    row.value = row.default_value
    return row
