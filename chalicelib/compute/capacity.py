"""Host capacity: what a host has (its facts × the over-provisioning ratios) and what is left
after the VMs placed on it. Recomputed from the VMs themselves, so drift cannot build up."""
from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from chalicelib.db.models import Host, VmInstance
from chalicelib.globalconfig import ConfigDefinition, define, get_value

CPU_RATIO = define(ConfigDefinition(
    "host", "cpu.overProvisioning.ratio", float, 10.0,
    "Virtual CPUs a host offers per physical CPU.", min=0.1, max=100,
))
MEMORY_RATIO = define(ConfigDefinition(
    "host", "memory.overProvisioning.ratio", float, 1.0,
    "Memory a host offers per byte it has.", min=0.1, max=10,
))

# VMs that hold their host's CPU and memory.
HOLDING_STATES = ("Starting", "Running", "Stopping", "Rebooting", "Migrating", "Paused",
                  "Unknown")


def refresh_capacity(db: Session, host: Host, cpu_num: int | None,
                     memory_bytes: int | None) -> None:
    """Totals from the host's own numbers, available = total - what its VMs hold."""
    if cpu_num:
        host.total_cpu_capacity = int(cpu_num * get_value(db, CPU_RATIO))
    if memory_bytes:
        host.total_memory_capacity = int(memory_bytes * get_value(db, MEMORY_RATIO))
    used_cpu, used_memory = db.execute(
        select(func.coalesce(func.sum(VmInstance.cpu_num), 0),
               func.coalesce(func.sum(VmInstance.memory_size), 0))
        .where(VmInstance.host_uuid == host.uuid, VmInstance.state.in_(HOLDING_STATES))
    ).one()
    host.available_cpu_capacity = host.total_cpu_capacity - int(used_cpu)
    host.available_memory_capacity = host.total_memory_capacity - int(used_memory)
