"""Attaching one resource to another through an attachment table (storage ↔ cluster ...)."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from chalicelib.context import Context
from chalicelib.db.base import Base
from chalicelib.errors import Conflict, InvalidArgument
from chalicelib.identity.ownership import get_visible


def _label(resource: Base) -> str:
    return f"{resource.__resource__} {resource.name} ({resource.uuid})"


def require_same_zone(resource: Base, target: Base) -> None:
    if resource.zone_uuid != target.zone_uuid:
        raise InvalidArgument(
            f"{_label(resource)} is in zone {resource.zone_uuid} but {_label(target)} is in "
            f"zone {target.zone_uuid}; they must be in the same zone",
            details={"zoneUuids": [resource.zone_uuid, target.zone_uuid]},
        )


Check = Callable[[Base, Base], None]


@dataclass(frozen=True)
class Attachment:
    """A resource kind attached to a target kind through ``ref_model``, whose primary key is
    (resource uuid, target uuid); the fields name the uuids in requests and errors."""

    ref_model: type[Base]
    resource: type[Base]
    resource_field: str
    target: type[Base]
    target_field: str

    def _pair(self, ctx: Context, resource_uuid: str, target_uuid: str) -> tuple[Base, Base]:
        return (get_visible(ctx, self.resource, resource_uuid, field=self.resource_field),
                get_visible(ctx, self.target, target_uuid, field=self.target_field))

    def attach(self, ctx: Context, resource_uuid: str, target_uuid: str,
               *checks: Check) -> Base:
        resource, target = self._pair(ctx, resource_uuid, target_uuid)
        for check in checks:
            check(resource, target)
        if ctx.session.get(self.ref_model, (resource.uuid, target.uuid)) is not None:
            raise Conflict(f"{_label(resource)} is already attached to {_label(target)}")
        keys = [column.key for column in self.ref_model.__table__.primary_key.columns]
        ctx.session.add(self.ref_model(**dict(zip(keys, (resource.uuid, target.uuid),
                                                  strict=True))))
        ctx.session.flush()
        ctx.session.refresh(resource)
        return resource

    def detach(self, ctx: Context, resource_uuid: str, target_uuid: str) -> Base:
        resource, target = self._pair(ctx, resource_uuid, target_uuid)
        ref = ctx.session.get(self.ref_model, (resource.uuid, target.uuid))
        if ref is None:
            raise Conflict(f"{_label(resource)} is not attached to {_label(target)}")
        ctx.session.delete(ref)
        ctx.session.flush()
        ctx.session.refresh(resource)
        return resource
