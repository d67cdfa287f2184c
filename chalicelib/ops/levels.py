"""Sync signatures and the levels that govern them, from global configs changeable at runtime."""
from __future__ import annotations

from sqlalchemy.orm import Session

from chalicelib.globalconfig import ConfigDefinition, define, get_value

HOST_SYNC_LEVEL = define(ConfigDefinition(
    "kvm", "host.syncLevel", int, 10,
    "Operations that may run at once on one host.", min=1, max=1000,
))
VM_SYNC_LEVEL = define(ConfigDefinition(
    "vm", "syncLevel", int, 1,
    "Operations that may run at once on one VM (1: strictly one after another).", min=1,
    max=100,
))

# Resource kind (the part of a signature before the colon) → the config giving its level.
LEVELS = {"host": HOST_SYNC_LEVEL, "vm": VM_SYNC_LEVEL}
DEFAULT_LEVEL = 1


def signature_of(kind: str, uuid: str) -> str:
    return f"{kind}:{uuid}"


def level_of(session: Session, signature: str) -> int:
    definition = LEVELS.get(signature.partition(":")[0])
    return get_value(session, definition) if definition else DEFAULT_LEVEL
