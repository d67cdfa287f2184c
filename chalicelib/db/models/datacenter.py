"""Zone ⊃ Cluster ⊃ Host."""
from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import BigInteger, Index, Integer, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from chalicelib.db.base import Base, Resource, fk_column
from chalicelib.db.types import UtcDateTime

if TYPE_CHECKING:
    from chalicelib.db.models.compute import VmInstance
    from chalicelib.db.models.network import L2Network, L3Network
    from chalicelib.db.models.storage import BackupStorage, PrimaryStorage

HYPERVISOR_TYPES = ("KVM", "Simulator")


class Zone(Resource, Base):
    __tablename__ = "zones"
    __resource__ = "Zone"
    __unique_name_scope__ = ()
    __dependents__ = ("clusters", "l2_networks", "primary_storages")

    name: Mapped[str] = mapped_column(String(255), nullable=False, unique=True)
    state: Mapped[str] = mapped_column(String(32), nullable=False, default="Enabled")
    type: Mapped[str] = mapped_column(String(32), nullable=False, default="zstack")

    clusters: Mapped[list[Cluster]] = relationship(back_populates="zone")
    hosts: Mapped[list[Host]] = relationship(back_populates="zone", viewonly=True)
    primary_storages: Mapped[list[PrimaryStorage]] = relationship(back_populates="zone")
    l2_networks: Mapped[list[L2Network]] = relationship(back_populates="zone")
    l3_networks: Mapped[list[L3Network]] = relationship(back_populates="zone", viewonly=True)
    backup_storages: Mapped[list[BackupStorage]] = relationship(
        secondary="backup_storage_zone_refs", back_populates="zones", viewonly=True
    )
    vm_instances: Mapped[list[VmInstance]] = relationship(back_populates="zone", viewonly=True)


class Cluster(Resource, Base):
    __tablename__ = "clusters"
    __resource__ = "Cluster"
    __unique_name_scope__ = ("zone_uuid",)
    __dependents__ = ("hosts",)
    __table_args__ = (UniqueConstraint("zone_uuid", "name"),)

    zone_uuid: Mapped[str] = fk_column("zones.uuid")
    hypervisor_type: Mapped[str] = mapped_column(String(32), nullable=False, default="KVM")
    state: Mapped[str] = mapped_column(String(32), nullable=False, default="Enabled")
    type: Mapped[str] = mapped_column(String(32), nullable=False, default="zstack")

    zone: Mapped[Zone] = relationship(back_populates="clusters")
    hosts: Mapped[list[Host]] = relationship(back_populates="cluster")
    primary_storages: Mapped[list[PrimaryStorage]] = relationship(
        secondary="primary_storage_cluster_refs", back_populates="clusters", viewonly=True
    )
    l2_networks: Mapped[list[L2Network]] = relationship(
        secondary="l2_network_cluster_refs", back_populates="clusters", viewonly=True
    )
    vm_instances: Mapped[list[VmInstance]] = relationship(back_populates="cluster", viewonly=True)


class Host(Resource, Base):
    __tablename__ = "hosts"
    __resource__ = "Host"
    __hidden_fields__ = frozenset({"tokenHash", "sshPassword", "sshPrivateKey"})
    __dependents__ = ("vm_instances",)
    # Placing a VM walks the hosts from the most memory free down (compute.allocation).
    __table_args__ = (Index("ix_hosts_free_memory", text("available_memory_capacity DESC"),
                            "uuid"),)

    zone_uuid: Mapped[str] = fk_column("zones.uuid")
    cluster_uuid: Mapped[str] = fk_column("clusters.uuid")
    management_ip: Mapped[str] = mapped_column(String(255), nullable=False, index=True)
    hypervisor_type: Mapped[str] = mapped_column(String(32), nullable=False, default="KVM")
    state: Mapped[str] = mapped_column(String(32), nullable=False, default="Enabled")
    status: Mapped[str] = mapped_column(
        String(32), nullable=False, default="Connecting", index=True
    )
    architecture: Mapped[str | None] = mapped_column(String(32))
    cpu_num: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    total_cpu_capacity: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    available_cpu_capacity: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    total_memory_capacity: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    available_memory_capacity: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    # The agent: how it authenticates (sha256 of its token), how to reach it over ssh, what it
    # last said about the machine, and when.
    token_hash: Mapped[str | None] = mapped_column(String(64))
    ssh_username: Mapped[str | None] = mapped_column(String(255))
    ssh_password: Mapped[str | None] = mapped_column(String(255))
    ssh_port: Mapped[int] = mapped_column(Integer, nullable=False, default=22)
    ssh_private_key: Mapped[str | None] = mapped_column(Text)
    # The sha256 of the playbook (and the operator's additions) that last deployed the agent;
    # None when the agent was installed by hand. ReconnectHost deploys again when it changed.
    agent_playbook_digest: Mapped[str | None] = mapped_column(String(64))
    os_version: Mapped[str | None] = mapped_column(String(255))
    kernel_version: Mapped[str | None] = mapped_column(String(255))
    libvirt_version: Mapped[str | None] = mapped_column(String(64))
    qemu_version: Mapped[str | None] = mapped_column(String(64))
    last_report_date: Mapped[datetime | None] = mapped_column(UtcDateTime, index=True)
    stranger_vm_uuids: Mapped[str | None] = mapped_column(Text)  # JSON list, unknown VMs seen
    # For simulator hosts: how the simulated hypervisor behaves (JSON: latency, failures).
    simulator_spec: Mapped[str | None] = mapped_column(Text)

    zone: Mapped[Zone] = relationship(back_populates="hosts")
    cluster: Mapped[Cluster] = relationship(back_populates="hosts")
    vm_instances: Mapped[list[VmInstance]] = relationship(
        back_populates="host", foreign_keys="VmInstance.host_uuid", viewonly=True
    )
