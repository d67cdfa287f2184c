"""Instance offerings (CPU, memory) and disk offerings (size)."""
from __future__ import annotations

from chalicelib.context import Context
from chalicelib.db.models import DiskOffering, InstanceOffering
from chalicelib.resources import add_resource


def create_instance_offering(ctx: Context, **fields) -> InstanceOffering:
    return add_resource(ctx, InstanceOffering(**fields))


def create_disk_offering(ctx: Context, **fields) -> DiskOffering:
    return add_resource(ctx, DiskOffering(**fields))
