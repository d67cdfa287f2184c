"""Primary storage (attached to clusters), backup storage (attached to zones), images."""
from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import BigInteger, Boolean, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from chalicelib.db.base import UUID_LENGTH, Base, Resource, fk_column, utcnow
from chalicelib.db.types import UtcDateTime

if TYPE_CHECKING:
    from chalicelib.db.models.compute import Volume
    from chalicelib.db.models.datacenter import Cluster, Zone

PRIMARY_STORAGE_TYPES = ("LocalStorage", "NFS")
BACKUP_STORAGE_TYPES = ("ImageStoreBackupStorage",)


def ref_key(target: str) -> Mapped[str]:
    """One side of an attachment table's composite primary key."""
    return mapped_column(
        String(UUID_LENGTH), ForeignKey(target, ondelete="CASCADE"), primary_key=True, index=True
    )


class PrimaryStorage(Resource, Base):
    __tablename__ = "primary_storages"
    __resource__ = "PrimaryStorage"
    __dependents__ = ("volumes",)

    zone_uuid: Mapped[str] = fk_column("zones.uuid")
    type: Mapped[str] = mapped_column(String(64), nullable=False)
    url: Mapped[str] = mapped_column(String(2048), nullable=False)
    mount_path: Mapped[str | None] = mapped_column(String(2048))
    state: Mapped[str] = mapped_column(String(32), nullable=False, default="Enabled")
    status: Mapped[str] = mapped_column(String(32), nullable=False, default="Connected")
    total_capacity: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    available_capacity: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    total_physical_capacity: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    available_physical_capacity: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)

    zone: Mapped[Zone] = relationship(back_populates="primary_storages")
    clusters: Mapped[list[Cluster]] = relationship(
        secondary="primary_storage_cluster_refs", back_populates="primary_storages", viewonly=True
    )
    volumes: Mapped[list[Volume]] = relationship(back_populates="primary_storage", viewonly=True)

    def inventory_extras(self) -> dict:
        return {"attachedClusterUuids": sorted(c.uuid for c in self.clusters)}


class PrimaryStorageClusterRef(Base):
    __tablename__ = "primary_storage_cluster_refs"

    primary_storage_uuid: Mapped[str] = ref_key("primary_storages.uuid")
    cluster_uuid: Mapped[str] = ref_key("clusters.uuid")
    create_date: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, nullable=False)


class BackupStorage(Resource, Base):
    __tablename__ = "backup_storages"
    __resource__ = "BackupStorage"
    __hidden_fields__ = frozenset({"password"})

    type: Mapped[str] = mapped_column(String(64), nullable=False)
    url: Mapped[str] = mapped_column(String(2048), nullable=False)
    hostname: Mapped[str] = mapped_column(String(255), nullable=False)
    username: Mapped[str] = mapped_column(String(255), nullable=False, default="root")
    password: Mapped[str | None] = mapped_column(String(255))
    ssh_port: Mapped[int] = mapped_column(Integer, nullable=False, default=22)
    state: Mapped[str] = mapped_column(String(32), nullable=False, default="Enabled")
    status: Mapped[str] = mapped_column(String(32), nullable=False, default="Connected")
    total_capacity: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    available_capacity: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)

    zones: Mapped[list[Zone]] = relationship(
        secondary="backup_storage_zone_refs", back_populates="backup_storages", viewonly=True
    )
    images: Mapped[list[Image]] = relationship(
        secondary="image_backup_storage_refs", back_populates="backup_storages", viewonly=True
    )

    def inventory_extras(self) -> dict:
        return {"attachedZoneUuids": sorted(z.uuid for z in self.zones)}


class BackupStorageZoneRef(Base):
    __tablename__ = "backup_storage_zone_refs"

    backup_storage_uuid: Mapped[str] = ref_key("backup_storages.uuid")
    zone_uuid: Mapped[str] = ref_key("zones.uuid")
    create_date: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, nullable=False)


class Image(Resource, Base):
    __tablename__ = "images"
    __resource__ = "Image"

    url: Mapped[str] = mapped_column(String(2048), nullable=False)
    media_type: Mapped[str] = mapped_column(
        String(64), nullable=False, default="RootVolumeTemplate"
    )
    format: Mapped[str] = mapped_column(String(32), nullable=False, default="qcow2")
    platform: Mapped[str] = mapped_column(String(32), nullable=False, default="Linux")
    guest_os_type: Mapped[str | None] = mapped_column(String(255))
    architecture: Mapped[str] = mapped_column(String(32), nullable=False, default="x86_64")
    system: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    size: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    actual_size: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    md5sum: Mapped[str | None] = mapped_column(String(255))
    state: Mapped[str] = mapped_column(String(32), nullable=False, default="Enabled")
    status: Mapped[str] = mapped_column(String(32), nullable=False, default="Ready")

    backup_storages: Mapped[list[BackupStorage]] = relationship(
        secondary="image_backup_storage_refs", back_populates="images", viewonly=True
    )

    def inventory_extras(self) -> dict:
        return {"backupStorageUuids": sorted(b.uuid for b in self.backup_storages)}


class ImageBackupStorageRef(Base):
    __tablename__ = "image_backup_storage_refs"

    image_uuid: Mapped[str] = ref_key("images.uuid")
    backup_storage_uuid: Mapped[str] = ref_key("backup_storages.uuid")
    install_path: Mapped[str | None] = mapped_column(String(2048))
    status: Mapped[str] = mapped_column(String(32), nullable=False, default="Ready")
    create_date: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, nullable=False)
