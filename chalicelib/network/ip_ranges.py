"""IP ranges of an L3 network, by start/end/netmask or by CIDR."""
from __future__ import annotations

import ipaddress
from ipaddress import IPv4Address, IPv4Network

from chalicelib.context import Context
from chalicelib.db.models import IpRange, L3Network
from chalicelib.errors import Conflict, InvalidArgument
from chalicelib.identity.ownership import get_visible
from chalicelib.network.dhcp import FLAT_L2_TYPE, dhcp_server_ip
from chalicelib.resources import add_resource


def _address(value: str, field: str) -> IPv4Address:
    try:
        return IPv4Address(value)
    except ValueError:
        raise InvalidArgument(f"{field} must be an IPv4 address, got {value!r}",
                              details={"field": field}) from None


def _network(address: IPv4Address, netmask: str) -> IPv4Network:
    try:
        return IPv4Network(f"{address}/{netmask}", strict=False)
    except ValueError:
        raise InvalidArgument(f"netmask {netmask!r} is not a valid IPv4 netmask",
                              details={"field": "netmask"}) from None


def _check_range(network: IPv4Network, start: IPv4Address, end: IPv4Address,
                 gateway: IPv4Address) -> None:
    if start > end:
        raise InvalidArgument(f"startIp {start} is after endIp {end}",
                              details={"field": "startIp"})
    if end not in network:
        raise InvalidArgument(f"endIp {end} is outside {network} (from startIp and netmask)",
                              details={"field": "endIp"})
    if gateway not in network:
        raise InvalidArgument(f"gateway {gateway} is outside {network}",
                              details={"field": "gateway"})
    if start <= gateway <= end:
        raise InvalidArgument(f"gateway {gateway} lies inside the range {start}-{end}",
                              details={"field": "gateway"})
    if network.prefixlen < 31:
        for reserved, what in ((network.network_address, "network"),
                               (network.broadcast_address, "broadcast")):
            if start <= reserved <= end:
                raise InvalidArgument(
                    f"the range {start}-{end} includes the {what} address {reserved}",
                    details={"field": "startIp" if what == "network" else "endIp"},
                )


def _check_against_existing(l3: L3Network, network: IPv4Network, start: IPv4Address,
                            end: IPv4Address) -> None:
    for other in l3.ip_ranges:
        if other.network_cidr != str(network):
            raise Conflict(
                f"L3 network {l3.name} already uses {other.network_cidr}; a new range must be in "
                f"the same network, not {network}",
                details={"field": "netmask", "existingIpRangeUuid": other.uuid},
            )
        if start <= IPv4Address(other.end_ip) and IPv4Address(other.start_ip) <= end:
            raise Conflict(
                f"{start}-{end} overlaps IP range {other.name} ({other.start_ip}-{other.end_ip})",
                details={"field": "startIp", "existingIpRangeUuid": other.uuid},
            )


def add_ip_range(ctx: Context, *, l3_network_uuid: str, name: str, description: str | None,
                 start_ip: str, end_ip: str, netmask: str, gateway: str) -> IpRange:
    l3 = get_visible(ctx, L3Network, l3_network_uuid, field="l3NetworkUuid")
    start, end = _address(start_ip, "startIp"), _address(end_ip, "endIp")
    gw = _address(gateway, "gateway")
    network = _network(start, netmask)
    _check_range(network, start, end, gw)
    _check_against_existing(l3, network, start, end)
    ip_range = add_resource(ctx, IpRange(
        l3_network_uuid=l3.uuid, name=name, description=description, start_ip=str(start),
        end_ip=str(end), netmask=str(network.netmask), gateway=str(gw),
        network_cidr=str(network), prefix_len=network.prefixlen,
    ))
    if l3.l2_network.type == FLAT_L2_TYPE:
        # Taken now, not by the first VM: VMs can never leave the network's DHCP server
        # without an address.
        dhcp_server_ip(ctx.session, l3.uuid)
    return ip_range


def add_ip_range_by_cidr(ctx: Context, *, l3_network_uuid: str, name: str,
                         description: str | None, network_cidr: str,
                         gateway: str | None) -> IpRange:
    """The whole network but its gateway: the gateway is its first or last host address."""
    try:
        network = ipaddress.IPv4Network(network_cidr, strict=True)
    except ValueError as exc:
        raise InvalidArgument(f"networkCidr {network_cidr!r} is not an IPv4 network: {exc}",
                              details={"field": "networkCidr"}) from None
    hosts = (network.network_address + 1, network.broadcast_address - 1)
    if network.prefixlen > 29:
        raise InvalidArgument(f"networkCidr {network} is too small; use /29 or larger",
                              details={"field": "networkCidr"})
    gw = _address(gateway, "gateway") if gateway else hosts[0]
    if gw == hosts[0]:
        start, end = hosts[0] + 1, hosts[1]
    elif gw == hosts[1]:
        start, end = hosts[0], hosts[1] - 1
    else:
        raise InvalidArgument(
            f"gateway must be the first ({hosts[0]}) or last ({hosts[1]}) host of {network}",
            details={"field": "gateway"},
        )
    return add_ip_range(ctx, l3_network_uuid=l3_network_uuid, name=name,
                        description=description, start_ip=str(start), end_ip=str(end),
                        netmask=str(network.netmask), gateway=str(gw))
