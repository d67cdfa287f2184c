"""What a VM is made of: CPU and memory (instance offering), data disk size (disk offering)."""
from __future__ import annotations

from sqlalchemy import BigInteger, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from chalicelib.db.base import Base, Resource


class InstanceOffering(Resource, Base):
    __tablename__ = "instance_offerings"
    __resource__ = "InstanceOffering"

    cpu_num: Mapped[int] = mapped_column(Integer, nullable=False)
    cpu_speed: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    memory_size: Mapped[int] = mapped_column(BigInteger, nullable=False)
    allocator_strategy: Mapped[str] = mapped_column(
        String(64), nullable=False, default="DefaultHostAllocatorStrategy"
    )
    sort_key: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    state: Mapped[str] = mapped_column(String(32), nullable=False, default="Enabled")
    type: Mapped[str] = mapped_column(String(32), nullable=False, default="UserVm")


class DiskOffering(Resource, Base):
    __tablename__ = "disk_offerings"
    __resource__ = "DiskOffering"

    disk_size: Mapped[int] = mapped_column(BigInteger, nullable=False)
    allocator_strategy: Mapped[str] = mapped_column(
        String(64), nullable=False, default="DefaultPrimaryStorageAllocationStrategy"
    )
    sort_key: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    state: Mapped[str] = mapped_column(String(32), nullable=False, default="Enabled")
    type: Mapped[str] = mapped_column(String(32), nullable=False, default="zstack")
