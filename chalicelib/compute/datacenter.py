"""Zones and the clusters in them."""
from __future__ import annotations

from chalicelib.context import Context
from chalicelib.db.models import Cluster, Zone
from chalicelib.identity.ownership import get_visible
from chalicelib.resources import add_resource


def create_zone(ctx: Context, *, name: str, description: str | None) -> Zone:
    return add_resource(ctx, Zone(name=name, description=description))


def create_cluster(ctx: Context, *, zone_uuid: str, name: str, description: str | None,
                   hypervisor_type: str) -> Cluster:
    zone = get_visible(ctx, Zone, zone_uuid, field="zoneUuid")
    return add_resource(ctx, Cluster(zone_uuid=zone.uuid, name=name, description=description,
                                     hypervisor_type=hypervisor_type))
