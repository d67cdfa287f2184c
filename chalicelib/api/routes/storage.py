"""Primary storage, backup storage and images."""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from chalicelib.api.crud import attachment_operations, resource_operations
from chalicelib.api.operation import Operation
from chalicelib.api.request import ApiRequest, CreateRequest, Description, Name, Secret, Uuid
from chalicelib.db.models import BackupStorage, Image, PrimaryStorage
from chalicelib.storage import backup, images, primary

Url = Annotated[str, Field(min_length=1, max_length=2048)]


class AddPrimaryStorageRequest(CreateRequest):
    zone_uuid: Uuid
    name: Name
    url: Url = Field(description="A path on each host (local) or server:/export (NFS)")
    description: Description | None = None
    total_capacity: Annotated[int, Field(
        ge=0, le=2**60, description="Bytes Aerie may place volumes in (until hosts report "
        "their storage, this is how its size is known; 0: no volume fits)")] = 0


class PrimaryStorageClusterRequest(ApiRequest):
    primary_storage_uuid: Uuid
    cluster_uuid: Uuid


class AddImageStoreBackupStorageRequest(CreateRequest):
    name: Name
    description: Description | None = None
    url: Url = Field(description="Directory on the backup storage host that keeps images")
    hostname: Annotated[str, Field(min_length=1, max_length=255)]
    username: Annotated[str, Field(min_length=1, max_length=255)] = "root"
    password: Secret | None = None
    ssh_port: Annotated[int, Field(ge=1, le=65535)] = 22


class BackupStorageZoneRequest(ApiRequest):
    backup_storage_uuid: Uuid
    zone_uuid: Uuid


class AddImageRequest(CreateRequest):
    name: Name
    description: Description | None = None
    url: Url
    media_type: Literal["RootVolumeTemplate", "DataVolumeTemplate", "ISO"] = "RootVolumeTemplate"
    format: Literal["qcow2", "raw", "iso"] = "qcow2"
    platform: Literal["Linux", "Windows", "Other"] = "Linux"
    guest_os_type: Annotated[str, Field(max_length=255)] | None = None
    architecture: Literal["x86_64", "aarch64"] = "x86_64"
    system: bool = False
    backup_storage_uuids: Annotated[list[Uuid], Field(min_length=1)]


def _add_primary(kind: str):
    return lambda ctx, r: primary.add_primary_storage(ctx, type=kind, **r.fields())


OPERATIONS = [
    Operation("AddLocalPrimaryStorage", "POST", "/v1/primary-storage/local-storage",
              AddPrimaryStorageRequest, _add_primary("LocalStorage"),
              "Add local primary storage (a directory on every host)", asynchronous=True,
              admin_only=True, resource="PrimaryStorage", tags=("primary storage",)),
    Operation("AddNfsPrimaryStorage", "POST", "/v1/primary-storage/nfs",
              AddPrimaryStorageRequest, _add_primary("NFS"), "Add NFS primary storage",
              asynchronous=True, admin_only=True, resource="PrimaryStorage",
              tags=("primary storage",)),
    *resource_operations(PrimaryStorage, "/v1/primary-storage", admin_only=True,
                         has_state=True, tag="primary storage"),
    *attachment_operations(
        "AttachPrimaryStorageToCluster", "DetachPrimaryStorageFromCluster",
        "/v1/clusters/{clusterUuid}/primary-storage/{primaryStorageUuid}",
        PrimaryStorageClusterRequest,
        lambda ctx, r: primary.attach_to_cluster(ctx, r.primary_storage_uuid, r.cluster_uuid),
        lambda ctx, r: primary.detach_from_cluster(ctx, r.primary_storage_uuid, r.cluster_uuid),
        what="primary storage to / from a cluster of its zone", resource="PrimaryStorage",
        tag="primary storage"),
    Operation("AddImageStoreBackupStorage", "POST", "/v1/backup-storage/image-store",
              AddImageStoreBackupStorageRequest,
              lambda ctx, r: backup.add_backup_storage(ctx, type="ImageStoreBackupStorage",
                                                       **r.fields()),
              "Add an image store backup storage", asynchronous=True, admin_only=True,
              resource="BackupStorage", tags=("backup storage",)),
    *resource_operations(BackupStorage, "/v1/backup-storage", admin_only=True, has_state=True,
                         tag="backup storage"),
    *attachment_operations(
        "AttachBackupStorageToZone", "DetachBackupStorageFromZone",
        "/v1/zones/{zoneUuid}/backup-storage/{backupStorageUuid}", BackupStorageZoneRequest,
        lambda ctx, r: backup.attach_to_zone(ctx, r.backup_storage_uuid, r.zone_uuid),
        lambda ctx, r: backup.detach_from_zone(ctx, r.backup_storage_uuid, r.zone_uuid),
        what="backup storage to / from a zone", resource="BackupStorage",
        tag="backup storage"),
    Operation("AddImage", "POST", "/v1/images", AddImageRequest,
              lambda ctx, r: images.add_image(ctx, **r.fields()),
              "Register an image on backup storage", asynchronous=True, resource="Image",
              tags=("image",)),
    *resource_operations(Image, "/v1/images", has_state=True, tag="image"),
]
