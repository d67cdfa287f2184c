"""VM instances with their NICs and volumes, and volume snapshots."""
from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import BigInteger, Boolean, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from chalicelib.db.base import Base, Resource, fk_column

if TYPE_CHECKING:
    from chalicelib.db.models.datacenter import Cluster, Host, Zone
    from chalicelib.db.models.network import L3Network, UsedIp
    from chalicelib.db.models.network_services import Eip, SecurityGroup
    from chalicelib.db.models.storage import PrimaryStorage

VM_STATES = (
    "Created", "Starting", "Running", "Stopping", "Stopped", "Rebooting", "Migrating",
    "Destroying", "Destroyed", "Expunging", "Unknown", "Error",
)


class VmInstance(Resource, Base):
    __tablename__ = "vm_instances"
    __resource__ = "VmInstance"
    # Listing in creation order (the query API's default sort) reads the index, not the table.
    __table_args__ = (Index("ix_vm_instances_create_date_uuid", "create_date", "uuid"),)

    zone_uuid: Mapped[str | None] = fk_column("zones.uuid", nullable=True)
    cluster_uuid: Mapped[str | None] = fk_column("clusters.uuid", nullable=True)
    host_uuid: Mapped[str | None] = fk_column("hosts.uuid", nullable=True)
    last_host_uuid: Mapped[str | None] = fk_column("hosts.uuid", nullable=True)
    image_uuid: Mapped[str | None] = fk_column("images.uuid", nullable=True)
    instance_offering_uuid: Mapped[str | None] = fk_column("instance_offerings.uuid", nullable=True)
    root_volume_uuid: Mapped[str | None] = mapped_column(String(32))
    default_l3_network_uuid: Mapped[str | None] = mapped_column(String(32))
    hypervisor_type: Mapped[str | None] = mapped_column(String(32))
    type: Mapped[str] = mapped_column(String(32), nullable=False, default="UserVm")
    state: Mapped[str] = mapped_column(String(32), nullable=False, default="Created", index=True)
    cpu_num: Mapped[int] = mapped_column(Integer, nullable=False)
    cpu_speed: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    memory_size: Mapped[int] = mapped_column(BigInteger, nullable=False)
    platform: Mapped[str] = mapped_column(String(32), nullable=False, default="Linux")
    architecture: Mapped[str] = mapped_column(String(32), nullable=False, default="x86_64")
    allocator_strategy: Mapped[str | None] = mapped_column(String(64))

    zone: Mapped[Zone | None] = relationship(back_populates="vm_instances")
    cluster: Mapped[Cluster | None] = relationship(back_populates="vm_instances")
    host: Mapped[Host | None] = relationship(
        back_populates="vm_instances", foreign_keys="VmInstance.host_uuid"
    )
    vm_nics: Mapped[list[VmNic]] = relationship(back_populates="vm_instance",
                                                order_by="VmNic.device_id")
    all_volumes: Mapped[list[Volume]] = relationship(back_populates="vm_instance")

    def inventory_extras(self) -> dict:
        from chalicelib.db.inventory import to_inventory

        return {"vmNics": [to_inventory(nic) for nic in self.vm_nics]}


class VmNic(Resource, Base):
    __tablename__ = "vm_nics"
    __resource__ = "VmNic"
    # Joins from an L3 network to its VMs (QueryZone vmInstance.vmNics.l3Network.name=…)
    # answered from the index alone.
    __table_args__ = (Index("ix_vm_nics_l3_network_vm", "l3_network_uuid", "vm_instance_uuid"),)

    vm_instance_uuid: Mapped[str] = fk_column("vm_instances.uuid")
    l3_network_uuid: Mapped[str] = fk_column("l3_networks.uuid")
    used_ip_uuid: Mapped[str | None] = fk_column("used_ips.uuid", nullable=True)
    ip: Mapped[str | None] = mapped_column(String(64), index=True)
    mac: Mapped[str] = mapped_column(String(17), nullable=False, unique=True)
    netmask: Mapped[str | None] = mapped_column(String(64))
    gateway: Mapped[str | None] = mapped_column(String(64))
    device_id: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    internal_name: Mapped[str | None] = mapped_column(String(255))

    vm_instance: Mapped[VmInstance] = relationship(back_populates="vm_nics")
    l3_network: Mapped[L3Network] = relationship(back_populates="vm_nics")
    used_ip: Mapped[UsedIp | None] = relationship()
    eip: Mapped[Eip | None] = relationship(back_populates="vm_nic", viewonly=True)
    security_groups: Mapped[list[SecurityGroup]] = relationship(
        secondary="vm_nic_security_group_refs", back_populates="vm_nics", viewonly=True
    )


class Volume(Resource, Base):
    __tablename__ = "volumes"
    __resource__ = "Volume"

    primary_storage_uuid: Mapped[str | None] = fk_column("primary_storages.uuid", nullable=True)
    vm_instance_uuid: Mapped[str | None] = fk_column("vm_instances.uuid", nullable=True)
    disk_offering_uuid: Mapped[str | None] = fk_column("disk_offerings.uuid", nullable=True)
    root_image_uuid: Mapped[str | None] = fk_column("images.uuid", nullable=True)
    install_path: Mapped[str | None] = mapped_column(String(2048))
    type: Mapped[str] = mapped_column(String(32), nullable=False, default="Data")
    format: Mapped[str] = mapped_column(String(32), nullable=False, default="qcow2")
    size: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    actual_size: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    device_id: Mapped[int | None] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(32), nullable=False, default="Enabled")
    status: Mapped[str] = mapped_column(String(32), nullable=False, default="NotInstantiated")

    primary_storage: Mapped[PrimaryStorage | None] = relationship(back_populates="volumes")
    vm_instance: Mapped[VmInstance | None] = relationship(back_populates="all_volumes")
    snapshots: Mapped[list[VolumeSnapshot]] = relationship(back_populates="volume")


class VolumeSnapshot(Resource, Base):
    __tablename__ = "volume_snapshots"
    __resource__ = "VolumeSnapshot"

    volume_uuid: Mapped[str | None] = fk_column("volumes.uuid", nullable=True)
    primary_storage_uuid: Mapped[str | None] = fk_column("primary_storages.uuid", nullable=True)
    parent_uuid: Mapped[str | None] = fk_column("volume_snapshots.uuid", nullable=True)
    primary_storage_install_path: Mapped[str | None] = mapped_column(String(2048))
    type: Mapped[str] = mapped_column(String(32), nullable=False, default="Hypervisor")
    volume_type: Mapped[str] = mapped_column(String(32), nullable=False, default="Root")
    format: Mapped[str] = mapped_column(String(32), nullable=False, default="qcow2")
    size: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    latest: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    state: Mapped[str] = mapped_column(String(32), nullable=False, default="Enabled")
    status: Mapped[str] = mapped_column(String(32), nullable=False, default="Creating")

    volume: Mapped[Volume | None] = relationship(back_populates="snapshots")
