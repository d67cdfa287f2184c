"""Flat networks' DHCP: the server address of an L3 network, and the ``dhcp`` object each VM
NIC on it carries to its host in ``vm.create`` / ``vm.start`` (the agent's side, and the
object's format, are in ``hostagent/drivers/dhcp.py``).

An L3 network on a NoVlan L2 network has one DHCP server address, taken from its IP ranges
the first time it is asked for and recorded as a ``UsedIp`` with ``use_for="DHCP"``, so no
VM NIC is ever given it. Every host serving the network uses that same address, each in a
namespace of its own on its own bridge.

Concurrent first calls agree without a lock: each tries the same addresses in the same order
(the highest free address of the ranges first), so they race for one address whose unique
key lets only one claim it; the others find it taken and read the winner's record.
"""
from __future__ import annotations

from collections.abc import Iterator
from ipaddress import IPv4Address, IPv4Network
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from chalicelib.db.models import IpRange, L3NetworkDns, UsedIp
from chalicelib.errors import Conflict, InvalidArgument
from chalicelib.network.ip_allocation import allocate_ip, release_ip

DHCP_USE = "DHCP"
FLAT_L2_TYPE = "L2NoVlanNetwork"
IP_IN_USE = "IpInUse"  # allocate_ip's code for a requested address that is taken
WINDOW = 64  # addresses read per query while looking for the highest free one


def dhcp_server_ip(db: Session, l3_network_uuid: str) -> str:
    """The L3 network's DHCP server address, allocated on the first call. Conflict
    (``NoFreeIp``) when the network has no free address left for it."""
    recorded = _recorded(db, l3_network_uuid)
    if recorded is not None:
        return recorded
    for candidate, taken_by_dhcp in _free_from_the_top(db, l3_network_uuid):
        if taken_by_dhcp:
            return candidate  # a concurrent first call's, committed since _recorded looked
        try:
            return allocate_ip(db, l3_network_uuid, candidate, use_for=DHCP_USE).ip
        except InvalidArgument:
            continue  # a range's gateway, network or broadcast address
        except Conflict as exc:
            if exc.code != IP_IN_USE:
                raise
        recorded = _recorded(db, l3_network_uuid)  # taken: by a concurrent first call?
        if recorded is not None:
            return recorded
    # Nothing free was found: allocate_ip says so, naming the network and its ranges.
    return allocate_ip(db, l3_network_uuid, use_for=DHCP_USE).ip


def release_dhcp_server_ip(db: Session, l3_network_uuid: str) -> bool:
    """Give the address back (before the network or its range is deleted); idempotent."""
    released = False
    for used_ip_uuid in db.scalars(select(UsedIp.uuid).where(
            UsedIp.l3_network_uuid == l3_network_uuid, UsedIp.use_for == DHCP_USE)):
        released |= release_ip(db, used_ip_uuid)
    return released


# Core statements (tables, not ORM entities): they run for every VM created, planned.
_DNS_ROWS, _USED = L3NetworkDns.__table__, UsedIp.__table__
_DNS = select(_DNS_ROWS.c.dns).where(
    _DNS_ROWS.c.l3_network_uuid == bindparam("l3")).order_by(_DNS_ROWS.c.create_date)


def dhcp_spec(db: Session, *, l2_type: str, l3_network_uuid: str, dns_domain: str | None,
              ip: str | None, netmask: str | None, gateway: str | None,
              hostname: str | None = None) -> dict[str, Any] | None:
    """A NIC's ``dhcp`` object for the agent, from its columns and its networks'; None when
    its network has no DHCP server on the hosts (not a flat network) or the NIC has no
    address to hand out."""
    if l2_type != FLAT_L2_TYPE or ip is None or netmask is None:
        return None
    return {"l3NetworkUuid": l3_network_uuid,
            "serverIp": dhcp_server_ip(db, l3_network_uuid),
            "prefixLength": IPv4Network(f"0.0.0.0/{netmask}").prefixlen,
            "gateway": gateway,
            "dns": [d for d in db.scalars(_DNS, {"l3": l3_network_uuid}) if _is_ipv4(d)],
            "dnsDomain": dns_domain, "hostname": hostname}


_RECORDED = select(_USED.c.ip).where(
    _USED.c.l3_network_uuid == bindparam("l3"), _USED.c.use_for == DHCP_USE,
).order_by(_USED.c.create_date, _USED.c.uuid).limit(1)
# Looked up by the (L3 network, address) unique key, not by scanning the network's addresses.
_STILL_RECORDED = select(_USED.c.ip).where(
    _USED.c.l3_network_uuid == bindparam("l3"), _USED.c.ip == bindparam("ip"),
    _USED.c.use_for == DHCP_USE)
# The address each L3 network's server was last seen to have; checked on every use, since
# it can be released (and its transaction may not have committed).
_last_seen: dict[str, str] = {}


def _recorded(db: Session, l3_network_uuid: str) -> str | None:
    seen = _last_seen.get(l3_network_uuid)
    if seen is not None and db.scalar(_STILL_RECORDED,
                                      {"l3": l3_network_uuid, "ip": seen}) is not None:
        return seen
    found = db.scalar(_RECORDED, {"l3": l3_network_uuid})
    if found is not None:
        _last_seen[l3_network_uuid] = found
    return found


def _free_from_the_top(db: Session, l3_network_uuid: str) -> Iterator[tuple[str, bool]]:
    """The ranges' addresses not in use, highest first, read a window at a time; and, in
    its place in that order, one a DHCP server uses (flagged True). Concurrent first calls
    try the same addresses in the same order, so the one that won took the highest address
    free when it looked: one that finds it used must take it, not the next free one."""
    ranges = db.scalars(select(IpRange).where(IpRange.l3_network_uuid == l3_network_uuid,
                                              IpRange.ip_version == 4)).all()
    for ip_range in sorted(ranges, key=lambda r: int(IPv4Address(r.end_ip)), reverse=True):
        first, high = int(IPv4Address(ip_range.start_ip)), int(IPv4Address(ip_range.end_ip))
        while high >= first:
            low = max(first, high - WINDOW + 1)
            used = dict(db.execute(select(UsedIp.ip_in_long, UsedIp.use_for).where(
                UsedIp.l3_network_uuid == l3_network_uuid,
                UsedIp.ip_in_long.between(low, high))).all())
            for ip in range(high, low - 1, -1):
                if ip not in used or used[ip] == DHCP_USE:
                    yield str(IPv4Address(ip)), ip in used
            high = low - 1


def _is_ipv4(address: str) -> bool:
    try:
        IPv4Address(address)
    except ValueError:
        return False
    return True
