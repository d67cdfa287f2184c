"""A flat L3 network's DHCP server address, on SQLite and MySQL: taken once from its ranges
(the highest free address), the same on every later call and for concurrent first calls,
never handed to a VM NIC, and the ``dhcp`` object a NIC carries to its host."""
from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import func, select

from chalicelib.db.database import Database
from chalicelib.db.models import L2Network, L3Network, L3NetworkDns, UsedIp, VmNic
from chalicelib.errors import Conflict
from chalicelib.network.dhcp import dhcp_server_ip, dhcp_spec, release_dhcp_server_ip
from chalicelib.network.ip_allocation import allocate_nic
from tests.support.datacenter import build_site, building
from tests.support.invariants import ip_leaks


def server_ip(db: Database, l3: str) -> str:
    with db.session() as session:
        return dhcp_server_ip(session, l3)


def dhcp_rows(db: Database, l3: str) -> list[str]:
    with db.session() as session:
        return list(session.scalars(select(UsedIp.ip).where(UsedIp.l3_network_uuid == l3,
                                                            UsedIp.use_for == "DHCP")))


def test_the_address_is_allocated_once_from_the_top_of_the_ranges(db):
    with building(db) as b:
        site = build_site(b)  # 10.0.0.2-10.0.0.254
    assert server_ip(db, site.l3) == "10.0.0.254"
    assert server_ip(db, site.l3) == "10.0.0.254"
    assert dhcp_rows(db, site.l3) == ["10.0.0.254"]
    with db.session() as session:
        assert ip_leaks(session) == []


def test_an_address_a_nic_holds_is_skipped_and_the_dhcp_address_never_goes_to_a_nic(db):
    with building(db) as b:
        l3 = b.l3(b.l2(b.zone(), []))
        b.ip_range(l3, "10.0.1.10", "10.0.1.13", "10.0.1.0/24", "10.0.1.1")
        vms = [b.vm(f"vm{n}") for n in range(4)]
    with db.session() as session:
        allocate_nic(session, vms[0], l3, device_id=0, requested_ip="10.0.1.13")
    assert server_ip(db, l3) == "10.0.1.12"
    with db.session() as session:
        given = {allocate_nic(session, vm, l3, device_id=0).ip for vm in vms[1:3]}
    assert given == {"10.0.1.10", "10.0.1.11"}
    with db.session() as session, pytest.raises(Conflict) as full:
        allocate_nic(session, vms[3], l3, device_id=0)
    assert full.value.code == "NoFreeIp"
    with db.session() as session:
        assert "10.0.1.12" not in set(session.scalars(select(VmNic.ip)))
        assert ip_leaks(session) == []


def test_concurrent_first_calls_agree_on_one_address(db):
    with building(db) as b:
        site = build_site(b)
    together = threading.Barrier(8)

    def first_call(_: int) -> str:
        together.wait(10)
        with db.session() as session:
            answer = dhcp_server_ip(session, site.l3)
            time.sleep(0.2)  # the transactions overlap: none has committed when others look
        return answer

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(first_call, range(8)))
    assert len(set(answers)) == 1
    assert dhcp_rows(db, site.l3) == answers[:1]


def test_a_full_network_says_so_and_a_release_gives_the_address_back(db):
    with building(db) as b:
        site = build_site(b)
        b.used_ips(site.l3, site.ip_range, list(range(0x0A000002, 0x0A0000FF)))
    with db.session() as session, pytest.raises(Conflict) as full:
        dhcp_server_ip(session, site.l3)
    assert full.value.code == "NoFreeIp" and "has no free IP" in full.value.message
    with db.session() as session:
        session.execute(UsedIp.__table__.delete().where(UsedIp.ip == "10.0.0.200"))
    assert server_ip(db, site.l3) == "10.0.0.200"
    with db.session() as session:
        assert release_dhcp_server_ip(session, site.l3) is True
        assert release_dhcp_server_ip(session, site.l3) is False
    assert dhcp_rows(db, site.l3) == []


def test_a_nic_on_a_flat_network_gets_a_dhcp_object_and_one_on_a_vlan_none(db):
    with building(db) as b:
        site = build_site(b)
        vm = b.vm()
        for address in ("8.8.8.8", "2001:4860:4860::8888", "1.1.1.1"):
            b.session.add(L3NetworkDns(l3_network_uuid=site.l3, dns=address))
        b.session.get(L3Network, site.l3).dns_domain = "corp.example"
    with db.session() as session:
        nic = allocate_nic(session, vm, site.l3, device_id=0)
        l3 = session.get(L3Network, site.l3)
        l2 = session.get(L2Network, site.l2)
        columns = {"l3_network_uuid": l3.uuid, "dns_domain": l3.dns_domain, "ip": nic.ip,
                   "netmask": nic.netmask, "gateway": nic.gateway}
        spec = dhcp_spec(session, l2_type=l2.type, **columns, hostname="web-1")
        assert sorted(spec.pop("dns")) == ["1.1.1.1", "8.8.8.8"]  # IPv4 only
        # The highest address the range has free: the NIC took a random one first.
        top_free = "10.0.0.253" if nic.ip == "10.0.0.254" else "10.0.0.254"
        assert spec == {"l3NetworkUuid": site.l3, "serverIp": top_free,
                        "prefixLength": 24, "gateway": "10.0.0.1",
                        "dnsDomain": "corp.example", "hostname": "web-1"}
        assert nic.ip != spec["serverIp"]
        assert dhcp_spec(session, l2_type="L2VlanNetwork", **columns) is None
    with db.session() as session:
        assert session.scalar(select(func.count()).select_from(UsedIp)) == 2
