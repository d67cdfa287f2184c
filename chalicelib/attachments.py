"""Attaching one resource to another through an attachment table (storage ↔ cluster ...)."""
from __future__ import annotations

from chalicelib.context import Context
from chalicelib.db.base import Base
from chalicelib.errors import Conflict, InvalidArgument


def _label(resource: Base) -> str:
    return f"{resource.__resource__} {resource.name} ({resource.uuid})"


def require_same_zone(resource: Base, target: Base) -> None:
    if resource.zone_uuid != target.zone_uuid:
        raise InvalidArgument(
            f"{_label(resource)} is in zone {resource.zone_uuid} but {_label(target)} is in "
            f"zone {target.zone_uuid}; they must be in the same zone",
            details={"zoneUuids": [resource.zone_uuid, target.zone_uuid]},
        )


def attach(ctx: Context, ref_model: type[Base], resource: Base, target: Base) -> None:
    """Insert the (resource, target) row; both are keyed by the table's primary key order."""
    if ctx.session.get(ref_model, (resource.uuid, target.uuid)) is not None:
        raise Conflict(f"{_label(resource)} is already attached to {_label(target)}")
    keys = [column.key for column in ref_model.__table__.primary_key.columns]
    ctx.session.add(ref_model(**dict(zip(keys, (resource.uuid, target.uuid), strict=True))))
    ctx.session.flush()


def detach(ctx: Context, ref_model: type[Base], resource: Base, target: Base) -> None:
    ref = ctx.session.get(ref_model, (resource.uuid, target.uuid))
    if ref is None:
        raise Conflict(f"{_label(resource)} is not attached to {_label(target)}")
    ctx.session.delete(ref)
    ctx.session.flush()
