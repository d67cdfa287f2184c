"""The backup storage a new VM's root volume is downloaded from: one that holds the image and
serves the VM's zone."""
from __future__ import annotations

from typing import Any

from sqlalchemy import Row, bindparam, select
from sqlalchemy.orm import Session

from chalicelib.db.models import BackupStorage, BackupStorageZoneRef, Image, ImageBackupStorageRef
from chalicelib.errors import InvalidState, NotFound

NO_BACKUP_STORAGE = "NoBackupStorageAvailable"


# Core statements (tables, not ORM entities): they run on every VM created, planned.
_IMAGES, _STORAGES = Image.__table__, BackupStorage.__table__
_ZONE_REFS, _IMAGE_REFS = BackupStorageZoneRef.__table__, ImageBackupStorageRef.__table__
_IMAGE = select(_IMAGES.c.uuid, _IMAGES.c.name, _IMAGES.c.state, _IMAGES.c.status).where(
    _IMAGES.c.uuid == bindparam("image"))
_HOLDING_THE_IMAGE = select(
    _STORAGES.c.uuid, _STORAGES.c.name, _STORAGES.c.state, _STORAGES.c.status,
    _ZONE_REFS.c.zone_uuid,
).join(_IMAGE_REFS, _IMAGE_REFS.c.backup_storage_uuid == _STORAGES.c.uuid).outerjoin(
    _ZONE_REFS,
    (_ZONE_REFS.c.backup_storage_uuid == _STORAGES.c.uuid)
    & (_ZONE_REFS.c.zone_uuid == bindparam("zone")),
).where(_IMAGE_REFS.c.image_uuid == bindparam("image"),
        _IMAGE_REFS.c.status == "Ready",
        ).order_by(_STORAGES.c.available_capacity.desc(), _STORAGES.c.uuid)


def _image(session: Session, image_uuid: str) -> Row[Any]:
    image = session.execute(_IMAGE, {"image": image_uuid}).one_or_none()
    if image is None:
        raise NotFound(f"Image {image_uuid} does not exist",
                       details={"field": "imageUuid", "uuid": image_uuid})
    if image.state != "Enabled" or image.status != "Ready":
        raise InvalidState(f"image {image.name} ({image.uuid}) is {image.state} and "
                           f"{image.status}; a VM needs an Enabled, Ready image",
                           details={"imageUuid": image.uuid})
    return image


def select_backup_storage(session: Session, image_uuid: str, zone_uuid: str) -> Row[Any]:
    """An Enabled, Connected backup storage attached to the zone with the image Ready on it
    (its uuid, name, state and status); of several, the one with the most space free.
    InvalidState (409) naming what each storage that holds the image lacks when none
    qualifies."""
    image = _image(session, image_uuid)
    rows = session.execute(_HOLDING_THE_IMAGE, {"image": image.uuid, "zone": zone_uuid}).all()
    for storage in rows:
        if storage.zone_uuid and storage.state == "Enabled" and storage.status == "Connected":
            return storage
    reasons = "; ".join(
        f"{storage.name} ({storage.uuid}) is "
        + ("not attached to the zone" if not storage.zone_uuid
           else f"{storage.state} and {storage.status}")
        for storage in rows) or "no backup storage has it Ready"
    raise InvalidState(
        f"no Enabled, Connected backup storage attached to zone {zone_uuid} holds image "
        f"{image.name} ({image.uuid}): {reasons}",
        code=NO_BACKUP_STORAGE, details={"imageUuid": image.uuid, "zoneUuid": zone_uuid},
    )
