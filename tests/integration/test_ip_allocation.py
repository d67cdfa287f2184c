"""IP addresses and NICs, on SQLite and MySQL: addresses only from the ranges and never the
gateway, never the same address twice however many transactions allocate at once, a clear
error when the network is full, releases that are idempotent, and a cost per allocation that
does not grow with the addresses in use."""
from __future__ import annotations

import re
import threading
from concurrent.futures import ThreadPoolExecutor
from ipaddress import IPv4Address

import pytest
from sqlalchemy import event, func, select

from chalicelib.db.database import Database
from chalicelib.db.models import UsedIp, VmNic
from chalicelib.errors import Conflict, InvalidArgument
from chalicelib.network.ip_allocation import allocate_ip, allocate_nic, release_ip, release_nic
from chalicelib.network.mac import random_mac
from tests.support.datacenter import build_site, building
from tests.support.invariants import assert_no_leaks, ip_leaks


def small_network(db: Database, start: str, end: str, cidr: str, gateway: str) -> str:
    with building(db) as b:
        zone = b.zone()
        l3 = b.l3(b.l2(zone, []))
        b.ip_range(l3, start, end, cidr, gateway)
    return l3


def allocate(db: Database, l3: str, requested: str | None = None) -> str:
    with db.session() as session:
        return allocate_ip(session, l3, requested).ip


def test_addresses_come_from_the_range_with_its_netmask_and_gateway(db):
    l3 = small_network(db, "192.168.1.10", "192.168.1.20", "192.168.1.0/24", "192.168.1.1")
    with db.session() as session:
        used = allocate_ip(session, l3)
        assert 10 <= int(IPv4Address(used.ip)) - int(IPv4Address("192.168.1.0")) <= 20
        assert used.ip_in_long == int(IPv4Address(used.ip))
        assert (used.netmask, used.gateway, used.l3_network_uuid) == (
            "255.255.255.0", "192.168.1.1", l3)


def test_the_gateway_is_never_handed_out_and_a_full_network_says_so(db):
    # A range that (unlike those the API accepts) contains its own gateway.
    l3 = small_network(db, "10.0.0.1", "10.0.0.6", "10.0.0.0/24", "10.0.0.1")
    handed = {allocate(db, l3) for _ in range(5)}
    assert handed == {f"10.0.0.{i}" for i in range(2, 7)}
    with pytest.raises(Conflict) as raised:
        allocate(db, l3)
    assert raised.value.code == "NoFreeIp"
    assert re.search(r"L3 network l3 \(\w+\) has no free IP in its ranges "
                     r"\(10\.0\.0\.1-10\.0\.0\.6\)", raised.value.message), raised.value.message


def test_an_l3_network_without_ranges_has_no_free_ip_and_an_unknown_one_is_not_found(db):
    with building(db) as b:
        l3 = b.l3(b.l2(b.zone(), []))
    with pytest.raises(Conflict, match="no free IP"):
        allocate(db, l3)
    with pytest.raises(Exception, match="L3Network nope does not exist"):
        allocate(db, "nope")


def test_a_requested_address_is_given_if_free_and_refused_if_not(db):
    l3 = small_network(db, "10.0.0.10", "10.0.0.20", "10.0.0.0/24", "10.0.0.1")
    assert allocate(db, l3, "10.0.0.15") == "10.0.0.15"
    with pytest.raises(Conflict) as raised:
        allocate(db, l3, "10.0.0.15")
    assert raised.value.code == "IpInUse" and "10.0.0.15 is already used" in raised.value.message
    for outside in ("10.0.0.1", "10.0.0.21", "10.0.1.15"):
        with pytest.raises(InvalidArgument, match="is not an address L3 network l3 hands out"):
            allocate(db, l3, outside)
    with pytest.raises(InvalidArgument, match="not an IPv4 address"):
        allocate(db, l3, "10.0.0.300")


def test_concurrent_allocations_never_hand_out_an_address_twice(db):
    # 400 addresses in two ranges of a /23; 8 threads take 50 each, one transaction each.
    with building(db) as b:
        l3 = b.l3(b.l2(b.zone(), []))
        b.ip_range(l3, "10.1.0.10", "10.1.0.255", "10.1.0.0/23", "10.1.0.1")
        b.ip_range(l3, "10.1.1.0", "10.1.1.153", "10.1.0.0/23", "10.1.0.1")
    handed: list[str] = []
    lock = threading.Lock()

    def take_fifty(_: int) -> None:
        for _ in range(50):
            ip = allocate(db, l3)
            with lock:
                handed.append(ip)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(take_fifty, range(8)))
    assert len(handed) == 400 and len(set(handed)) == 400
    with db.session() as session:
        assert session.scalar(select(func.count()).select_from(UsedIp)) == 400
    with pytest.raises(Conflict, match="has no free IP"):
        allocate(db, l3)


def test_release_is_idempotent_and_frees_the_address(db):
    l3 = small_network(db, "10.0.0.10", "10.0.0.10", "10.0.0.0/24", "10.0.0.1")
    with db.session() as session:
        used = allocate_ip(session, l3).uuid
    with db.session() as session:
        assert release_ip(session, used) is True
    with db.session() as session:
        assert release_ip(session, used) is False
    assert allocate(db, l3) == "10.0.0.10"


def test_a_sixteen_with_ten_thousand_addresses_in_use_costs_a_few_statements(db):
    with building(db) as b:
        l3 = b.l3(b.l2(b.zone(), []))
        ip_range = b.ip_range(l3, "172.16.0.2", "172.16.255.254", "172.16.0.0/16", "172.16.0.1")
        first = int(IPv4Address("172.16.0.2"))
        b.used_ips(l3, ip_range, list(range(first, first + 10_000)))
    statements: list[str] = []

    def count(*args) -> None:
        statements.append(args[2])

    event.listen(db.engine, "before_cursor_execute", count)
    try:
        with db.session() as session:
            handed = {allocate_ip(session, l3).ip for _ in range(50)}
    finally:
        event.remove(db.engine, "before_cursor_execute", count)
    assert len(handed) == 50
    # per allocation: the network, its ranges, one probe, the insert, reading the row back
    assert len(statements) <= 50 * 6, len(statements)
    assert not any("ORDER BY used_ips.ip_in_long" in s for s in statements)


# --- NICs --------------------------------------------------------------------------------------


def test_a_nic_gets_an_ip_and_a_unique_mac_and_goes_away_with_its_ip(db):
    with building(db) as b:
        site = build_site(b)
        vm = b.vm()
    with db.session() as session:
        nic = allocate_nic(session, vm, site.l3, device_id=0)
        assert re.fullmatch(r"fa(:[0-9a-f]{2}){5}", nic.mac)
        assert nic.ip.startswith("10.0.0.") and nic.gateway == "10.0.0.1"
        assert allocate_nic(session, vm, site.l3, device_id=0).uuid == nic.uuid  # a re-run
        nic_uuid = nic.uuid
    with db.session() as session:
        assert ip_leaks(session) == []
        assert release_nic(session, nic_uuid) is True
    with db.session() as session:
        assert release_nic(session, nic_uuid) is False
        assert session.scalar(select(func.count()).select_from(VmNic)) == 0
        assert session.scalar(select(func.count()).select_from(UsedIp)) == 0
        assert ip_leaks(session) == []


def test_releasing_a_nics_ip_leaves_the_nic_without_one_which_the_checker_reports(db):
    with building(db) as b:
        site = build_site(b)
        vm = b.vm()
    with db.session() as session:
        nic = allocate_nic(session, vm, site.l3, device_id=0, requested_ip="10.0.0.9")
        used_ip, nic_name = nic.used_ip_uuid, nic.name
    with db.session() as session:
        release_ip(session, used_ip)
    with db.session() as session:
        assert session.scalar(select(VmNic.ip)) is None
        assert any(nic_name in leak and "has no IP" in leak for leak in ip_leaks(session))


def test_random_macs_are_locally_administered_unicast_and_do_not_repeat():
    macs = {random_mac() for _ in range(10_000)}
    assert len(macs) == 10_000
    for mac in list(macs)[:100]:
        first = int(mac.split(":")[0], 16)
        assert first & 0b10 and not first & 0b01


def test_many_nics_at_once_get_distinct_addresses_and_macs(db):
    with building(db) as b:
        site = build_site(b)
        vms = [b.vm(f"vm{i}") for i in range(40)]

    def add_nic(vm: str) -> None:
        with db.session() as session:
            allocate_nic(session, vm, site.l3, device_id=0)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(add_nic, vms))
    with db.session() as session:
        nics = list(session.scalars(select(VmNic)))
        assert len({n.ip for n in nics}) == len({n.mac for n in nics}) == 40
        assert ip_leaks(session) == []
        assert_no_leaks(session, (ip_leaks,))
