"""Network services built on L3 networks: VIPs, EIPs, security groups and their rules."""
from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import Integer, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from chalicelib.db.base import Base, Resource, fk_column, utcnow
from chalicelib.db.models.storage import ref_key
from chalicelib.db.types import UtcDateTime

if TYPE_CHECKING:
    from chalicelib.db.models.compute import VmNic
    from chalicelib.db.models.network import L3Network


class Vip(Resource, Base):
    __tablename__ = "vips"
    __resource__ = "Vip"

    l3_network_uuid: Mapped[str] = fk_column("l3_networks.uuid")
    used_ip_uuid: Mapped[str | None] = fk_column("used_ips.uuid", nullable=True)
    ip: Mapped[str] = mapped_column(String(64), nullable=False, index=True)
    gateway: Mapped[str | None] = mapped_column(String(64))
    netmask: Mapped[str | None] = mapped_column(String(64))
    service_provider: Mapped[str | None] = mapped_column(String(64))
    use_for: Mapped[str | None] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(32), nullable=False, default="Enabled")

    l3_network: Mapped[L3Network] = relationship()
    eips: Mapped[list[Eip]] = relationship(back_populates="vip")


class Eip(Resource, Base):
    __tablename__ = "eips"
    __resource__ = "Eip"

    vip_uuid: Mapped[str] = fk_column("vips.uuid")
    vm_nic_uuid: Mapped[str | None] = fk_column("vm_nics.uuid", nullable=True)
    vip_ip: Mapped[str] = mapped_column(String(64), nullable=False, index=True)
    guest_ip: Mapped[str | None] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(32), nullable=False, default="Enabled")

    vip: Mapped[Vip] = relationship(back_populates="eips")
    vm_nic: Mapped[VmNic | None] = relationship(back_populates="eip")


class SecurityGroup(Resource, Base):
    __tablename__ = "security_groups"
    __resource__ = "SecurityGroup"

    state: Mapped[str] = mapped_column(String(32), nullable=False, default="Enabled")
    ip_version: Mapped[int] = mapped_column(Integer, nullable=False, default=4)

    rules: Mapped[list[SecurityGroupRule]] = relationship(
        back_populates="security_group", foreign_keys="SecurityGroupRule.security_group_uuid"
    )
    vm_nics: Mapped[list[VmNic]] = relationship(
        secondary="vm_nic_security_group_refs", back_populates="security_groups", viewonly=True
    )
    l3_networks: Mapped[list[L3Network]] = relationship(
        secondary="security_group_l3_network_refs", viewonly=True
    )


class SecurityGroupRule(Resource, Base):
    __tablename__ = "security_group_rules"
    __resource__ = "SecurityGroupRule"

    security_group_uuid: Mapped[str] = fk_column("security_groups.uuid")
    remote_security_group_uuid: Mapped[str | None] = fk_column(
        "security_groups.uuid", nullable=True
    )
    type: Mapped[str] = mapped_column(String(32), nullable=False)  # Ingress | Egress
    protocol: Mapped[str] = mapped_column(String(32), nullable=False, default="ALL")
    start_port: Mapped[int] = mapped_column(Integer, nullable=False, default=-1)
    end_port: Mapped[int] = mapped_column(Integer, nullable=False, default=-1)
    allowed_cidr: Mapped[str] = mapped_column(String(64), nullable=False, default="0.0.0.0/0")
    ip_version: Mapped[int] = mapped_column(Integer, nullable=False, default=4)
    state: Mapped[str] = mapped_column(String(32), nullable=False, default="Enabled")

    security_group: Mapped[SecurityGroup] = relationship(
        back_populates="rules", foreign_keys=[security_group_uuid]
    )


class VmNicSecurityGroupRef(Base):
    __tablename__ = "vm_nic_security_group_refs"

    vm_nic_uuid: Mapped[str] = ref_key("vm_nics.uuid")
    security_group_uuid: Mapped[str] = ref_key("security_groups.uuid")
    create_date: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, nullable=False)


class SecurityGroupL3NetworkRef(Base):
    __tablename__ = "security_group_l3_network_refs"

    security_group_uuid: Mapped[str] = ref_key("security_groups.uuid")
    l3_network_uuid: Mapped[str] = ref_key("l3_networks.uuid")
    create_date: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, nullable=False)
