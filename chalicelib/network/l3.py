"""L3 networks and their DNS servers."""
from __future__ import annotations

import ipaddress

from chalicelib.context import Context
from chalicelib.db.models import L2Network, L3Network, L3NetworkDns
from chalicelib.errors import Conflict, InvalidArgument
from chalicelib.identity.ownership import get_visible
from chalicelib.resources import add_resource


def create_l3_network(ctx: Context, *, l2_network_uuid: str, **fields) -> L3Network:
    l2 = get_visible(ctx, L2Network, l2_network_uuid, field="l2NetworkUuid")
    return add_resource(ctx, L3Network(l2_network_uuid=l2.uuid, zone_uuid=l2.zone_uuid, **fields))


def _dns_address(dns: str) -> str:
    """The address in its canonical text, as it is stored (2001:DB8::1 -> 2001:db8::1)."""
    try:
        return str(ipaddress.ip_address(dns))
    except ValueError:
        raise InvalidArgument(f"dns must be an IP address, got {dns!r}",
                              details={"field": "dns"}) from None


def add_dns(ctx: Context, l3_network_uuid: str, dns: str) -> L3Network:
    network = get_visible(ctx, L3Network, l3_network_uuid, field="l3NetworkUuid")
    address = _dns_address(dns)
    if address in (d.dns for d in network.dns):
        raise Conflict(f"{address} is already a DNS server of L3 network {network.name}",
                       details={"field": "dns"})
    network.dns.append(L3NetworkDns(dns=address))
    ctx.session.flush()
    return network


def remove_dns(ctx: Context, l3_network_uuid: str, dns: str) -> L3Network:
    network = get_visible(ctx, L3Network, l3_network_uuid, field="l3NetworkUuid")
    address = _dns_address(dns)
    for entry in network.dns:
        if entry.dns == address:
            network.dns.remove(entry)
            ctx.session.flush()
            return network
    raise Conflict(f"{address} is not a DNS server of L3 network {network.name}",
                   details={"field": "dns", "dns": [d.dns for d in network.dns]})
