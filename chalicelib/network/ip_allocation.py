"""IP addresses from an L3 network's ranges, and the VM NICs that use them.

No IP is ever handed out twice: ``used_ips`` is unique on (L3 network, ip), and an address is
claimed by an ``INSERT`` that skips a duplicate instead of failing (``INSERT OR IGNORE`` on
SQLite, ``INSERT IGNORE`` on MySQL). The statement's row count says whether this transaction
got the address; a concurrent transaction that claimed it first makes it 0 (on MySQL the
insert waits for that transaction to commit), and the allocator tries another address. No
savepoint is needed, so a lost race never disturbs the caller's transaction.

Choosing an address is random, like ZStack's default strategy: a batch of random addresses
from the L3 network's ranges is checked against ``used_ips`` in one indexed query, so a /16 with
10,000 addresses in use costs two statements per allocation. Only when random probing keeps
hitting used addresses (a range nearly full) does it read the used addresses of the ranges and
pick among the gaps; that read is also how a full L3 network is recognised.
"""
from __future__ import annotations

import bisect
import random
from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network

from sqlalchemy import Table, delete, insert, select, update
from sqlalchemy.orm import Session

from chalicelib.db.base import new_uuid
from chalicelib.db.models import IpRange, L3Network, UsedIp, VmInstance, VmNic
from chalicelib.errors import Conflict, InvalidArgument, NotFound
from chalicelib.network.mac import random_mac

PROBES = 32  # random addresses checked per query
PROBE_ROUNDS = 2  # batches of random addresses before reading the used ones
CLAIM_ROUNDS = 8  # attempts to claim, each after losing races for every address it tried
NO_FREE_IP = "NoFreeIp"


def insert_unless_duplicate(session: Session, table: Table, values: dict[str, object]) -> bool:
    """Insert a row; False (and no row, and no error) if it would duplicate a unique key."""
    statement = (insert(table).values(**values)
                 .prefix_with("OR IGNORE", dialect="sqlite")
                 .prefix_with("IGNORE", dialect="mysql")
                 .prefix_with("IGNORE", dialect="mariadb"))
    return session.execute(statement).rowcount == 1


@dataclass(frozen=True)
class _Range:
    row: IpRange
    first: int
    last: int
    reserved: frozenset[int]  # the gateway, network and broadcast addresses, if inside

    @classmethod
    def of(cls, row: IpRange) -> _Range:
        network = IPv4Network(row.network_cidr)
        reserved = {int(IPv4Address(row.gateway))}
        if network.prefixlen < 31:
            reserved |= {int(network.network_address), int(network.broadcast_address)}
        first, last = int(IPv4Address(row.start_ip)), int(IPv4Address(row.end_ip))
        return cls(row, first, last, frozenset(ip for ip in reserved if first <= ip <= last))

    @property
    def size(self) -> int:
        return self.last - self.first + 1

    def offers(self, ip: int) -> bool:
        return self.first <= ip <= self.last and ip not in self.reserved

    def free(self, used: list[int]) -> Iterator[int]:
        """The addresses it offers that are not in ``used`` (sorted)."""
        start = self.first
        for ip in [*used, self.last + 1]:
            for candidate in range(start, min(ip, self.last + 1)):
                if candidate not in self.reserved:
                    yield candidate
            start = max(start, ip + 1)


@dataclass(frozen=True)
class _Ranges:
    l3: L3Network
    ranges: list[_Range]

    @property
    def text(self) -> str:
        return ", ".join(f"{r.row.start_ip}-{r.row.end_ip}" for r in self.ranges) or "none"

    def containing(self, ip: int) -> _Range | None:
        return next((r for r in self.ranges if r.offers(ip)), None)

    def sample(self, count: int) -> list[tuple[_Range, int]]:
        """Up to ``count`` distinct random addresses the ranges offer."""
        ends = []
        total = 0
        for r in self.ranges:
            total += r.size
            ends.append(total)
        picks = []
        for index in random.sample(range(total), min(count, total)):
            position = bisect.bisect_right(ends, index)
            r = self.ranges[position]
            ip = r.last - (ends[position] - 1 - index)
            if r.offers(ip):
                picks.append((r, ip))
        return picks


def _ranges(session: Session, l3_uuid: str) -> _Ranges:
    l3 = session.get(L3Network, l3_uuid)
    if l3 is None:
        raise NotFound(f"L3Network {l3_uuid} does not exist",
                       details={"field": "l3NetworkUuid", "uuid": l3_uuid})
    rows = session.scalars(select(IpRange).where(IpRange.l3_network_uuid == l3_uuid,
                                                 IpRange.ip_version == 4)
                           .order_by(IpRange.start_ip))
    return _Ranges(l3, sorted((_Range.of(row) for row in rows), key=lambda r: r.first))


def _used_among(session: Session, l3_uuid: str, ips: list[int]) -> set[int]:
    """Which of ``ips`` are in use, through the unique (l3 network, ip) index."""
    texts = [str(IPv4Address(ip)) for ip in ips]
    return {int(IPv4Address(ip)) for ip in session.scalars(
        select(UsedIp.ip).where(UsedIp.l3_network_uuid == l3_uuid, UsedIp.ip.in_(texts)))}


def _free_by_reading_used(session: Session, ranges: _Ranges) -> list[tuple[_Range, int]]:
    free = []
    for r in ranges.ranges:
        used = list(session.scalars(
            select(UsedIp.ip_in_long).where(UsedIp.l3_network_uuid == ranges.l3.uuid,
                                            UsedIp.ip_in_long.between(r.first, r.last))
            .order_by(UsedIp.ip_in_long)))
        free.extend((r, ip) for ip in r.free(used))
    return free


def _claim(session: Session, ranges: _Ranges, r: _Range, ip: int, use_for: str) -> str | None:
    """The new UsedIp's uuid, or None if the address was taken first."""
    uuid = new_uuid()
    claimed = insert_unless_duplicate(session, UsedIp.__table__, {
        "uuid": uuid, "ip_range_uuid": r.row.uuid, "l3_network_uuid": ranges.l3.uuid,
        "ip": str(IPv4Address(ip)), "ip_in_long": ip, "netmask": r.row.netmask,
        "gateway": r.row.gateway, "use_for": use_for,
    })
    if claimed:
        return uuid
    if not _used_among(session, ranges.l3.uuid, [ip]):
        # Not a duplicate: MySQL's INSERT IGNORE also skips a row whose range just vanished.
        raise Conflict(f"IP range {r.row.uuid} of L3 network {ranges.l3.uuid} changed while "
                       f"{IPv4Address(ip)} was being allocated from it; retry",
                       code="ConcurrentConflict")
    return None


def _full(ranges: _Ranges) -> Conflict:
    l3 = ranges.l3
    return Conflict(f"L3 network {l3.name} ({l3.uuid}) has no free IP in its ranges "
                    f"({ranges.text})", code=NO_FREE_IP, details={"l3NetworkUuid": l3.uuid})


def _candidates(session: Session, ranges: _Ranges, round_: int) -> list[tuple[_Range, int]]:
    if round_ < PROBE_ROUNDS:
        sampled = ranges.sample(PROBES)
        used = _used_among(session, ranges.l3.uuid, [ip for _, ip in sampled])
        return [(r, ip) for r, ip in sampled if ip not in used]
    free = _free_by_reading_used(session, ranges)
    if not free:
        raise _full(ranges)
    return random.sample(free, min(len(free), PROBES))


def _allocate_requested(session: Session, ranges: _Ranges, requested_ip: str,
                        use_for: str) -> str:
    try:
        ip = int(IPv4Address(requested_ip))
    except ValueError:
        raise InvalidArgument(f"requested IP {requested_ip!r} is not an IPv4 address",
                              details={"field": "staticIp"}) from None
    r = ranges.containing(ip)
    if r is None:
        raise InvalidArgument(
            f"{requested_ip} is not an address L3 network {ranges.l3.name} hands out; its "
            f"ranges are {ranges.text} (less their gateway)", details={"field": "staticIp"})
    uuid = _claim(session, ranges, r, ip, use_for)
    if uuid is None:
        raise Conflict(f"IP {IPv4Address(ip)} is already used in L3 network {ranges.l3.name} "
                       f"({ranges.l3.uuid})", code="IpInUse", details={"ip": str(IPv4Address(ip))})
    return uuid


def allocate_ip(session: Session, l3_uuid: str, requested_ip: str | None = None, *,
                use_for: str = "VmNic") -> UsedIp:
    """A free address of the L3 network (``requested_ip`` if given), recorded as used. Conflict
    (409) when the network has no free address or the requested one is taken."""
    ranges = _ranges(session, l3_uuid)
    if not ranges.ranges:
        raise _full(ranges)
    if requested_ip is not None:
        return session.get(UsedIp, _allocate_requested(session, ranges, requested_ip, use_for))
    for round_ in range(CLAIM_ROUNDS):
        for r, ip in _candidates(session, ranges, round_):
            uuid = _claim(session, ranges, r, ip, use_for)
            if uuid is not None:
                return session.get(UsedIp, uuid)
    raise Conflict(f"could not claim a free IP in L3 network {ranges.l3.name} ({l3_uuid}): "
                   "concurrent allocations took every address tried; retry",
                   code="ConcurrentConflict")


def release_ip(session: Session, used_ip_uuid: str) -> bool:
    """Return the address to its range (a NIC that used it keeps no IP). True if this call
    released it; releasing again changes nothing."""
    session.execute(update(VmNic).where(VmNic.used_ip_uuid == used_ip_uuid)
                    .values(used_ip_uuid=None, ip=None, netmask=None, gateway=None))
    return session.execute(delete(UsedIp).where(UsedIp.uuid == used_ip_uuid)).rowcount == 1


# --- NICs ------------------------------------------------------------------------------------

MAC_ATTEMPTS = 5


def _insert_nic(session: Session, vm: VmInstance, used_ip: UsedIp, device_id: int) -> str:
    for _ in range(MAC_ATTEMPTS):
        uuid, mac = new_uuid(), random_mac()
        if insert_unless_duplicate(session, VmNic.__table__, {
            "uuid": uuid, "name": f"{vm.name}-nic{device_id}", "account_uuid": vm.account_uuid,
            "vm_instance_uuid": vm.uuid, "l3_network_uuid": used_ip.l3_network_uuid,
            "used_ip_uuid": used_ip.uuid, "ip": used_ip.ip, "mac": mac,
            "netmask": used_ip.netmask, "gateway": used_ip.gateway, "device_id": device_id,
            "internal_name": f"vnic{vm.uuid[:8]}.{device_id}",
        }):
            return uuid
        if session.scalar(select(VmNic.uuid).where(VmNic.mac == mac)) is None:
            raise Conflict(f"VM {vm.uuid} or L3 network {used_ip.l3_network_uuid} changed "
                           "while its NIC was being created; retry", code="ConcurrentConflict")
    raise Conflict(f"{MAC_ATTEMPTS} random MACs in a row were taken; retry",
                   code="ConcurrentConflict")


def allocate_nic(session: Session, vm_uuid: str, l3_uuid: str, *, device_id: int,
                 requested_ip: str | None = None) -> VmNic:
    """The VM's NIC number ``device_id`` on the L3 network, with an IP from it and a unique
    MAC. Idempotent: if the VM already has that NIC, it is returned as it is."""
    existing = session.scalar(select(VmNic).where(VmNic.vm_instance_uuid == vm_uuid,
                                                  VmNic.device_id == device_id))
    if existing is not None:
        return existing
    vm = session.get(VmInstance, vm_uuid)
    if vm is None:
        raise NotFound(f"VmInstance {vm_uuid} does not exist", details={"uuid": vm_uuid})
    used_ip = allocate_ip(session, l3_uuid, requested_ip)
    return session.get(VmNic, _insert_nic(session, vm, used_ip, device_id))


def release_nic(session: Session, nic_uuid: str) -> bool:
    """Release the NIC's IP and delete the NIC. True if this call deleted it; idempotent."""
    used_ip_uuid = session.scalar(select(VmNic.used_ip_uuid).where(VmNic.uuid == nic_uuid))
    if used_ip_uuid is not None:
        release_ip(session, used_ip_uuid)
    return session.execute(delete(VmNic).where(VmNic.uuid == nic_uuid)).rowcount == 1
