"""Host capacity: what a host has (its facts × the over-provisioning ratios) and what is left
after the VMs placed on it. Recomputed from the VMs themselves, so drift cannot build up."""
from __future__ import annotations

from sqlalchemy import func, select, update
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
    """Totals from the host's own numbers, available = total - what its VMs hold, in one
    statement: a VM placed on the host meanwhile (its hold committed after this transaction
    began) is counted, not overwritten."""
    values = {}
    if cpu_num:
        values[Host.total_cpu_capacity] = int(cpu_num * get_value(db, CPU_RATIO))
    if memory_bytes:
        values[Host.total_memory_capacity] = int(memory_bytes * get_value(db, MEMORY_RATIO))
    holding = (VmInstance.host_uuid == Host.uuid) & VmInstance.state.in_(HOLDING_STATES)
    used_cpu = select(func.coalesce(func.sum(VmInstance.cpu_num), 0)).where(holding)
    used_memory = select(func.coalesce(func.sum(VmInstance.memory_size), 0)).where(holding)
    total_cpu = values.get(Host.total_cpu_capacity, Host.total_cpu_capacity)
    total_memory = values.get(Host.total_memory_capacity, Host.total_memory_capacity)
    values[Host.available_cpu_capacity] = total_cpu - used_cpu.scalar_subquery()
    values[Host.available_memory_capacity] = total_memory - used_memory.scalar_subquery()
    db.execute(update(Host).where(Host.uuid == host.uuid).values(values)
               .execution_options(synchronize_session=False))
    db.expire(host, ["total_cpu_capacity", "total_memory_capacity", "available_cpu_capacity",
                     "available_memory_capacity"])
