"""L2 networks (NoVlan, Vlan) attached to clusters; L3 networks with IP ranges, DNS, used IPs."""
from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import BigInteger, Boolean, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from chalicelib.db.base import Base, Resource, fk_column, utcnow, uuid_column
from chalicelib.db.models.storage import ref_key
from chalicelib.db.types import UtcDateTime

if TYPE_CHECKING:
    from chalicelib.db.models.compute import VmNic
    from chalicelib.db.models.datacenter import Cluster, Zone

L2_TYPES = ("L2NoVlanNetwork", "L2VlanNetwork")
L3_CATEGORIES = ("Public", "Private", "System")


class L2Network(Resource, Base):
    __tablename__ = "l2_networks"
    __resource__ = "L2Network"
    __dependents__ = ("l3_networks",)

    zone_uuid: Mapped[str] = fk_column("zones.uuid")
    type: Mapped[str] = mapped_column(String(32), nullable=False)
    physical_interface: Mapped[str] = mapped_column(String(1024), nullable=False)
    vlan: Mapped[int | None] = mapped_column(Integer)

    zone: Mapped[Zone] = relationship(back_populates="l2_networks")
    clusters: Mapped[list[Cluster]] = relationship(
        secondary="l2_network_cluster_refs", back_populates="l2_networks", viewonly=True
    )
    l3_networks: Mapped[list[L3Network]] = relationship(back_populates="l2_network")

    def inventory_extras(self) -> dict:
        return {"attachedClusterUuids": sorted(c.uuid for c in self.clusters)}


class L2NetworkClusterRef(Base):
    __tablename__ = "l2_network_cluster_refs"

    l2_network_uuid: Mapped[str] = ref_key("l2_networks.uuid")
    cluster_uuid: Mapped[str] = ref_key("clusters.uuid")
    create_date: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, nullable=False)


class L3Network(Resource, Base):
    __tablename__ = "l3_networks"
    __resource__ = "L3Network"
    __dependents__ = ("vm_nics",)
    __parts__ = ("ip_ranges",)

    l2_network_uuid: Mapped[str] = fk_column("l2_networks.uuid")
    zone_uuid: Mapped[str] = fk_column("zones.uuid")
    type: Mapped[str] = mapped_column(String(32), nullable=False, default="L3BasicNetwork")
    category: Mapped[str] = mapped_column(String(32), nullable=False, default="Private")
    system: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    dns_domain: Mapped[str | None] = mapped_column(String(255))
    ip_version: Mapped[int] = mapped_column(Integer, nullable=False, default=4)
    state: Mapped[str] = mapped_column(String(32), nullable=False, default="Enabled")

    l2_network: Mapped[L2Network] = relationship(back_populates="l3_networks")
    zone: Mapped[Zone] = relationship(back_populates="l3_networks")
    ip_ranges: Mapped[list[IpRange]] = relationship(back_populates="l3_network")
    dns: Mapped[list[L3NetworkDns]] = relationship(
        back_populates="l3_network", order_by="L3NetworkDns.create_date",
        cascade="all, delete-orphan", passive_deletes=True,
    )
    used_ips: Mapped[list[UsedIp]] = relationship(back_populates="l3_network", viewonly=True)
    vm_nics: Mapped[list[VmNic]] = relationship(back_populates="l3_network", viewonly=True)

    def inventory_extras(self) -> dict:
        from chalicelib.db.inventory import to_inventory

        return {"ipRanges": [to_inventory(r) for r in self.ip_ranges],
                "dns": [d.dns for d in self.dns]}


class IpRange(Resource, Base):
    __tablename__ = "ip_ranges"
    __resource__ = "IpRange"
    # A VM's address keeps its range; the network's own (its DHCP server's) goes with it.
    __dependents__ = ("vm_used_ips",)
    __parts__ = ("service_used_ips",)

    l3_network_uuid: Mapped[str] = fk_column("l3_networks.uuid")
    start_ip: Mapped[str] = mapped_column(String(64), nullable=False)
    end_ip: Mapped[str] = mapped_column(String(64), nullable=False)
    netmask: Mapped[str] = mapped_column(String(64), nullable=False)
    gateway: Mapped[str] = mapped_column(String(64), nullable=False)
    network_cidr: Mapped[str] = mapped_column(String(64), nullable=False)
    prefix_len: Mapped[int] = mapped_column(Integer, nullable=False)
    ip_version: Mapped[int] = mapped_column(Integer, nullable=False, default=4)

    l3_network: Mapped[L3Network] = relationship(back_populates="ip_ranges")
    used_ips: Mapped[list[UsedIp]] = relationship(back_populates="ip_range", viewonly=True)
    vm_used_ips: Mapped[list[UsedIp]] = relationship(
        primaryjoin="and_(IpRange.uuid == foreign(UsedIp.ip_range_uuid), "
                    "UsedIp.use_for == 'VmNic')", viewonly=True)
    service_used_ips: Mapped[list[UsedIp]] = relationship(
        primaryjoin="and_(IpRange.uuid == foreign(UsedIp.ip_range_uuid), "
                    "UsedIp.use_for != 'VmNic')", viewonly=True)


class L3NetworkDns(Base):
    __tablename__ = "l3_network_dns"
    __table_args__ = (UniqueConstraint("l3_network_uuid", "dns"),)

    uuid: Mapped[str] = uuid_column()
    l3_network_uuid: Mapped[str] = fk_column("l3_networks.uuid", ondelete="CASCADE")
    dns: Mapped[str] = mapped_column(String(255), nullable=False)
    create_date: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, nullable=False)

    l3_network: Mapped[L3Network] = relationship(back_populates="dns")


class UsedIp(Base):
    """One allocated address. The unique (l3 network, ip) pair is what forbids a duplicate IP."""

    __tablename__ = "used_ips"
    __resource__ = "UsedIp"
    __table_args__ = (UniqueConstraint("l3_network_uuid", "ip"),)

    uuid: Mapped[str] = uuid_column()
    ip_range_uuid: Mapped[str] = fk_column("ip_ranges.uuid")
    l3_network_uuid: Mapped[str] = fk_column("l3_networks.uuid")
    ip: Mapped[str] = mapped_column(String(64), nullable=False)
    ip_in_long: Mapped[int] = mapped_column(BigInteger, nullable=False)
    netmask: Mapped[str] = mapped_column(String(64), nullable=False)
    gateway: Mapped[str] = mapped_column(String(64), nullable=False)
    use_for: Mapped[str] = mapped_column(String(64), nullable=False, default="VmNic")
    create_date: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, nullable=False)

    ip_range: Mapped[IpRange] = relationship(back_populates="used_ips")
    l3_network: Mapped[L3Network] = relationship(back_populates="used_ips")
