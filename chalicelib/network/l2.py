"""L2 networks: a physical interface (NoVlan) or a VLAN on one (Vlan), attached to clusters."""
from __future__ import annotations

from sqlalchemy import select

from chalicelib.attachments import Attachment, require_same_zone
from chalicelib.context import Context
from chalicelib.db.models import Cluster, L2Network, L2NetworkClusterRef, Zone
from chalicelib.errors import Conflict
from chalicelib.identity.ownership import get_visible
from chalicelib.resources import add_resource


def create_l2_network(ctx: Context, *, type: str, zone_uuid: str, name: str,
                      description: str | None, physical_interface: str,
                      vlan: int | None = None) -> L2Network:
    zone = get_visible(ctx, Zone, zone_uuid, field="zoneUuid")
    if vlan is not None:
        clash = ctx.session.scalars(select(L2Network).where(
            L2Network.zone_uuid == zone.uuid, L2Network.physical_interface == physical_interface,
            L2Network.vlan == vlan)).first()
        if clash:
            raise Conflict(
                f"VLAN {vlan} on {physical_interface} is already L2 network {clash.name} "
                f"({clash.uuid}) in this zone", details={"field": "vlan"},
            )
    return add_resource(ctx, L2Network(
        type=type, zone_uuid=zone.uuid, name=name, description=description,
        physical_interface=physical_interface, vlan=vlan,
    ))


CLUSTERS = Attachment(L2NetworkClusterRef, L2Network, "l2NetworkUuid", Cluster, "clusterUuid")


def _one_network_per_wire(network: L2Network, cluster: Cluster) -> None:
    """Two L2 networks cannot claim the same wire on one cluster's hosts."""
    for other in cluster.l2_networks:
        if (other.physical_interface, other.vlan) == (network.physical_interface, network.vlan) \
                and other.uuid != network.uuid:
            what = f"VLAN {network.vlan} on " if network.vlan is not None else ""
            raise Conflict(
                f"cluster {cluster.name} already has L2 network {other.name} ({other.uuid}) on "
                f"{what}{network.physical_interface}",
                details={"conflictingL2NetworkUuid": other.uuid},
            )


def attach_to_cluster(ctx: Context, l2_network_uuid: str, cluster_uuid: str) -> L2Network:
    return CLUSTERS.attach(ctx, l2_network_uuid, cluster_uuid, require_same_zone,
                           _one_network_per_wire)


def detach_from_cluster(ctx: Context, l2_network_uuid: str, cluster_uuid: str) -> L2Network:
    return CLUSTERS.detach(ctx, l2_network_uuid, cluster_uuid)
