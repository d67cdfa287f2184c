"""Backup storage keeps images; it serves the zones it is attached to."""
from __future__ import annotations

from chalicelib.attachments import Attachment
from chalicelib.context import Context
from chalicelib.db.models import BackupStorage, BackupStorageZoneRef, Zone
from chalicelib.resources import add_resource


def add_backup_storage(ctx: Context, **fields) -> BackupStorage:
    return add_resource(ctx, BackupStorage(**fields))


ZONES = Attachment(BackupStorageZoneRef, BackupStorage, "backupStorageUuid", Zone, "zoneUuid")


def attach_to_zone(ctx: Context, backup_storage_uuid: str, zone_uuid: str) -> BackupStorage:
    return ZONES.attach(ctx, backup_storage_uuid, zone_uuid)


def detach_from_zone(ctx: Context, backup_storage_uuid: str, zone_uuid: str) -> BackupStorage:
    return ZONES.detach(ctx, backup_storage_uuid, zone_uuid)
