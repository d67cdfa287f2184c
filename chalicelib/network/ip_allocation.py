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
import functools
import random
from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network

from sqlalchemy import Insert, Table, bindparam, delete, insert, select, update
from sqlalchemy.orm import Session

from chalicelib.db.base import new_uuid
from chalicelib.db.models import IpRange, L3Network, UsedIp, VmInstance, VmNic
from chalicelib.errors import Conflict, InvalidArgument, NotFound
from chalicelib.network.mac import random_mac

PROBES = 32  # random addresses checked per query
PROBE_ROUNDS = 2  # batches of random addresses before reading the used ones
CLAIM_ROUNDS = 8  # attempts to claim, each after losing races for every address it tried
NO_FREE_IP = "NoFreeIp"

# The statements of an allocation are built once, on the tables, with bind parameters.
USED_IPS = UsedIp.__table__
NICS = VmNic.__table__
RANGES = IpRange.__table__
L3_NETWORKS = L3Network.__table__
VMS = VmInstance.__table__


@functools.cache
def _insert_ignoring_duplicates(table: Table) -> Insert:
    return (insert(table).prefix_with("OR IGNORE", dialect="sqlite")
            .prefix_with("IGNORE", dialect="mysql").prefix_with("IGNORE", dialect="mariadb"))


def insert_unless_duplicate(session: Session, table: Table, values: dict[str, object]) -> bool:
    """Insert a row; False (and no row, and no error) if it would duplicate a unique key."""
    return session.execute(_insert_ignoring_duplicates(table), values).rowcount == 1


@dataclass(frozen=True)
class _Range:
    uuid: str
    start_ip: str
    end_ip: str
    netmask: str
    gateway: str
    first: int
    last: int
    reserved: frozenset[int]  # the gateway, network and broadcast addresses, if inside

    @classmethod
    @functools.lru_cache(maxsize=1024)
    def of(cls, uuid: str, start_ip: str, end_ip: str, netmask: str, gateway: str,
           network_cidr: str) -> _Range:
        network = IPv4Network(network_cidr)
        reserved = {int(IPv4Address(gateway))}
        if network.prefixlen < 31:
            reserved |= {int(network.network_address), int(network.broadcast_address)}
        first, last = int(IPv4Address(start_ip)), int(IPv4Address(end_ip))
        return cls(uuid, start_ip, end_ip, netmask, gateway, first, last,
                   frozenset(ip for ip in reserved if first <= ip <= last))

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
    l3_uuid: str
    l3_name: str
    ranges: list[_Range]

    @property
    def text(self) -> str:
        return ", ".join(f"{r.start_ip}-{r.end_ip}" for r in self.ranges) or "none"

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


# The network's name, and a row per IPv4 range (or one of NULLs if it has none).
_RANGES_OF = select(L3_NETWORKS.c.name, RANGES.c.uuid, RANGES.c.start_ip, RANGES.c.end_ip,
                    RANGES.c.netmask, RANGES.c.gateway, RANGES.c.network_cidr).outerjoin(
    RANGES, (RANGES.c.l3_network_uuid == L3_NETWORKS.c.uuid) & (RANGES.c.ip_version == 4),
).where(L3_NETWORKS.c.uuid == bindparam("l3"))


def _ranges(session: Session, l3_uuid: str) -> _Ranges:
    rows = session.execute(_RANGES_OF, {"l3": l3_uuid}).all()
    if not rows:
        raise NotFound(f"L3Network {l3_uuid} does not exist",
                       details={"field": "l3NetworkUuid", "uuid": l3_uuid})
    ranges = [_Range.of(*row[1:]) for row in rows if row.uuid is not None]
    return _Ranges(l3_uuid, rows[0].name, sorted(ranges, key=lambda r: r.first))


# A fixed number of addresses per query (a short list is padded with repeats): one SQL text,
# so the statement is planned once rather than expanded for each list (every VM runs it).
_USED_AMONG = select(USED_IPS.c.ip).where(
    USED_IPS.c.l3_network_uuid == bindparam("l3"),
    USED_IPS.c.ip.in_([bindparam(f"ip{n}") for n in range(PROBES)]))


def _dotted(ip: int) -> str:
    """``str(IPv4Address(ip))``, a tenth of the time."""
    return f"{ip >> 24}.{ip >> 16 & 255}.{ip >> 8 & 255}.{ip & 255}"


def _used_among(session: Session, l3_uuid: str, ips: list[int]) -> set[int]:
    """Which of ``ips`` are in use, through the unique (l3 network, ip) index."""
    by_text = {_dotted(ip): ip for ip in ips}
    texts, used = list(by_text), set()
    for start in range(0, len(texts), PROBES):
        chunk = texts[start:start + PROBES]
        chunk += chunk[:1] * (PROBES - len(chunk))
        used.update(by_text[text] for text in session.scalars(
            _USED_AMONG, {"l3": l3_uuid, **{f"ip{n}": text for n, text in enumerate(chunk)}}))
    return used


def _free_by_reading_used(session: Session, ranges: _Ranges) -> list[tuple[_Range, int]]:
    free = []
    for r in ranges.ranges:
        used = list(session.scalars(
            select(UsedIp.ip_in_long).where(UsedIp.l3_network_uuid == ranges.l3_uuid,
                                            UsedIp.ip_in_long.between(r.first, r.last))
            .order_by(UsedIp.ip_in_long)))
        free.extend((r, ip) for ip in r.free(used))
    return free


@dataclass(frozen=True)
class ClaimedIp:
    """An address recorded as used (a ``used_ips`` row)."""

    uuid: str
    l3_network_uuid: str
    ip: str
    ip_in_long: int
    netmask: str
    gateway: str


def _claim(session: Session, ranges: _Ranges, r: _Range, ip: int,
           use_for: str) -> ClaimedIp | None:
    """The address, now used; None if it was taken first."""
    claimed = ClaimedIp(new_uuid(), ranges.l3_uuid, _dotted(ip), ip, r.netmask,
                        r.gateway)
    if insert_unless_duplicate(session, USED_IPS, {
        "uuid": claimed.uuid, "ip_range_uuid": r.uuid, "l3_network_uuid": ranges.l3_uuid,
        "ip": claimed.ip, "ip_in_long": ip, "netmask": r.netmask, "gateway": r.gateway,
        "use_for": use_for,
    }):
        return claimed
    if not _used_among(session, ranges.l3_uuid, [ip]):
        # Not a duplicate: MySQL's INSERT IGNORE also skips a row whose range just vanished.
        raise Conflict(f"IP range {r.uuid} of L3 network {ranges.l3_uuid} changed while "
                       f"{IPv4Address(ip)} was being allocated from it; retry",
                       code="ConcurrentConflict")
    return None


def _full(ranges: _Ranges) -> Conflict:
    return Conflict(f"L3 network {ranges.l3_name} ({ranges.l3_uuid}) has no free IP in its "
                    f"ranges ({ranges.text})", code=NO_FREE_IP,
                    details={"l3NetworkUuid": ranges.l3_uuid})


def _candidates(session: Session, ranges: _Ranges, round_: int) -> list[tuple[_Range, int]]:
    if round_ < PROBE_ROUNDS:
        sampled = ranges.sample(PROBES)
        used = _used_among(session, ranges.l3_uuid, [ip for _, ip in sampled])
        return [(r, ip) for r, ip in sampled if ip not in used]
    free = _free_by_reading_used(session, ranges)
    if not free:
        raise _full(ranges)
    return random.sample(free, min(len(free), PROBES))


def _allocate_requested(session: Session, ranges: _Ranges, requested_ip: str,
                        use_for: str) -> ClaimedIp:
    try:
        ip = int(IPv4Address(requested_ip))
    except ValueError:
        raise InvalidArgument(f"requested IP {requested_ip!r} is not an IPv4 address",
                              details={"field": "staticIp"}) from None
    r = ranges.containing(ip)
    if r is None:
        raise InvalidArgument(
            f"{requested_ip} is not an address L3 network {ranges.l3_name} hands out; its "
            f"ranges are {ranges.text} (less their gateway)", details={"field": "staticIp"})
    claimed = _claim(session, ranges, r, ip, use_for)
    if claimed is None:
        raise Conflict(f"IP {IPv4Address(ip)} is already used in L3 network {ranges.l3_name} "
                       f"({ranges.l3_uuid})", code="IpInUse", details={"ip": str(IPv4Address(ip))})
    return claimed


def allocate_ip(session: Session, l3_uuid: str, requested_ip: str | None = None, *,
                use_for: str = "VmNic") -> ClaimedIp:
    """A free address of the L3 network (``requested_ip`` if given), recorded as used. Conflict
    (409) when the network has no free address or the requested one is taken."""
    ranges = _ranges(session, l3_uuid)
    if not ranges.ranges:
        raise _full(ranges)
    if requested_ip is not None:
        return _allocate_requested(session, ranges, requested_ip, use_for)
    for round_ in range(CLAIM_ROUNDS):
        for r, ip in _candidates(session, ranges, round_):
            claimed = _claim(session, ranges, r, ip, use_for)
            if claimed is not None:
                return claimed
    raise Conflict(f"could not claim a free IP in L3 network {ranges.l3_name} ({l3_uuid}): "
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
_NIC_WITH_MAC = select(NICS.c.uuid).where(NICS.c.mac == bindparam("mac"))


def _insert_nic(session: Session, vm_uuid: str, vm_name: str, account_uuid: str,
                used_ip: ClaimedIp, device_id: int) -> str:
    for _ in range(MAC_ATTEMPTS):
        uuid, mac = new_uuid(), random_mac()
        if insert_unless_duplicate(session, NICS, {
            "uuid": uuid, "name": f"{vm_name}-nic{device_id}", "account_uuid": account_uuid,
            "vm_instance_uuid": vm_uuid, "l3_network_uuid": used_ip.l3_network_uuid,
            "used_ip_uuid": used_ip.uuid, "ip": used_ip.ip, "mac": mac,
            "netmask": used_ip.netmask, "gateway": used_ip.gateway, "device_id": device_id,
            "internal_name": f"vnic{vm_uuid[:8]}.{device_id}",
        }):
            return uuid
        if session.scalar(_NIC_WITH_MAC, {"mac": mac}) is None:
            raise Conflict(f"VM {vm_uuid} or L3 network {used_ip.l3_network_uuid} changed "
                           "while its NIC was being created; retry", code="ConcurrentConflict")
    raise Conflict(f"{MAC_ATTEMPTS} random MACs in a row were taken; retry",
                   code="ConcurrentConflict")


# The VM's name and owner, and its NIC at the device number if it has one.
_OWNER_AND_NIC_AT = select(VMS.c.name, VMS.c.account_uuid, NICS.c.uuid.label("nic")).outerjoin(
    NICS, (NICS.c.vm_instance_uuid == VMS.c.uuid) & (NICS.c.device_id == bindparam("device")),
).where(VMS.c.uuid == bindparam("vm"))


def add_nic(session: Session, vm_uuid: str, l3_uuid: str, *, device_id: int,
            requested_ip: str | None = None) -> str:
    """The uuid of the VM's NIC number ``device_id`` on the L3 network, with an IP from it and
    a unique MAC. Idempotent: if the VM already has that NIC, it is left as it is."""
    owner = session.execute(_OWNER_AND_NIC_AT, {"vm": vm_uuid, "device": device_id}).first()
    if owner is None:
        raise NotFound(f"VmInstance {vm_uuid} does not exist", details={"uuid": vm_uuid})
    if owner.nic is not None:
        return owner.nic
    used_ip = allocate_ip(session, l3_uuid, requested_ip)
    return _insert_nic(session, vm_uuid, owner.name, owner.account_uuid, used_ip, device_id)


def allocate_nic(session: Session, vm_uuid: str, l3_uuid: str, *, device_id: int,
                 requested_ip: str | None = None) -> VmNic:
    """:func:`add_nic`, and the NIC it made (or found)."""
    return session.get(VmNic, add_nic(session, vm_uuid, l3_uuid, device_id=device_id,
                                      requested_ip=requested_ip))


def release_nic(session: Session, nic_uuid: str) -> bool:
    """Release the NIC's IP and delete the NIC. True if this call deleted it; idempotent."""
    used_ip_uuid = session.scalar(select(VmNic.used_ip_uuid).where(VmNic.uuid == nic_uuid))
    if used_ip_uuid is not None:
        release_ip(session, used_ip_uuid)
    return session.execute(delete(VmNic).where(VmNic.uuid == nic_uuid)).rowcount == 1
