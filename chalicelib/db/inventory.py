"""Models as API inventories: camelCase keys, ISO-8601 UTC times, secrets left out."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import inspect

from chalicelib.db.base import Base


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def wire_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat(timespec="milliseconds") + "Z"
    return value


def to_inventory(obj: Base) -> dict[str, Any]:
    hidden = obj.__hidden_fields__
    inventory = {}
    for attr in inspect(type(obj)).column_attrs:
        key = camel(attr.key)
        if key not in hidden:
            inventory[key] = wire_value(getattr(obj, attr.key))
    extras = getattr(obj, "inventory_extras", None)
    if extras is not None:
        inventory.update(extras())
    return inventory
