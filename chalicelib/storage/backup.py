"""Backup storage keeps images; it serves the zones it is attached to."""
from __future__ import annotations

from chalicelib.attachments import attach, detach
from chalicelib.context import Context
from chalicelib.db.models import BackupStorage, BackupStorageZoneRef, Zone
from chalicelib.identity.ownership import get_visible
from chalicelib.resources import add_resource


def add_backup_storage(ctx: Context, **fields) -> BackupStorage:
    return add_resource(ctx, BackupStorage(**fields))


def _pair(ctx: Context, backup_storage_uuid: str, zone_uuid: str):
    storage = get_visible(ctx, BackupStorage, backup_storage_uuid, field="backupStorageUuid")
    zone = get_visible(ctx, Zone, zone_uuid, field="zoneUuid")
    return storage, zone


def attach_to_zone(ctx: Context, backup_storage_uuid: str, zone_uuid: str) -> BackupStorage:
    storage, zone = _pair(ctx, backup_storage_uuid, zone_uuid)
    attach(ctx, BackupStorageZoneRef, storage, zone)
    ctx.session.refresh(storage)
    return storage


def detach_from_zone(ctx: Context, backup_storage_uuid: str, zone_uuid: str) -> BackupStorage:
    storage, zone = _pair(ctx, backup_storage_uuid, zone_uuid)
    detach(ctx, BackupStorageZoneRef, storage, zone)
    ctx.session.refresh(storage)
    return storage
