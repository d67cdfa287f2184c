"""A flat network's DHCP, seen from the control plane: its server takes one address of the
network when the range is added, each VM's NIC reaches its host with what that server must
hand out (on create and on start), and the address goes with the network.
(tests/e2e/test_agent_dhcp.py serves it with a real dnsmasq; tests/e2e/test_real_kvm_host.py
boots a guest that takes it.)"""
from __future__ import annotations

import ipaddress

import pytest
from sqlalchemy import select

from chalicelib.db.models import UsedIp
from tests.integration.test_vm_lifecycle import vm, wait_connected
from tests.support.cloud import GIB, build_cloud, vm_ips
from tests.support.invariants import assert_no_leaks


@pytest.fixture
def running_hosts(control_plane):
    control_plane.simulated_hosts.start()
    return control_plane


@pytest.fixture
def cloud(api, running_hosts):
    built = build_cloud(api, hosts=1, storage=100 * GIB, cidr="10.40.0.0/24")
    wait_connected(api, built.hosts)
    return built


def dhcp_address(db, l3: str) -> str:
    (address,) = db.scalars(select(UsedIp.ip).where(UsedIp.l3_network_uuid == l3,
                                                    UsedIp.use_for == "DHCP")).all()
    return address


def test_each_nic_on_a_flat_network_carries_its_dhcp_server(api, cloud, running_hosts):
    with running_hosts.db.session() as db:
        server = dhcp_address(db, cloud.l3)  # taken with the range, before any VM
        assert vm_ips(db) == []
    assert ipaddress.ip_address(server) in ipaddress.ip_network("10.40.0.0/24")

    created = api.do("POST", "/v1/vm-instances", cloud.vm_request(
        "web-1", systemTags=["hostname::web-1"]))
    hypervisor = running_hosts.simulated_hosts.executors[created["hostUuid"]].driver
    (nic,) = hypervisor.vms[created["uuid"]].spec.nics
    with running_hosts.db.session() as db:
        (address,) = vm_ips(db)
    assert nic.ip == address.ip != server
    assert (nic.dhcp.l3_network_uuid, nic.dhcp.server_ip, nic.dhcp.prefix_length,
            nic.dhcp.gateway, nic.dhcp.hostname) == (cloud.l3, server, 24, "10.40.0.1",
                                                     "web-1")
    assert hypervisor.dhcp_hosts(cloud.l3) == {nic.mac: nic.ip}

    # A start sends the whole spec again, DHCP and hostname included.
    api.do("PUT", f"/v1/vm-instances/{created['uuid']}/actions/stop")
    api.do("PUT", f"/v1/vm-instances/{created['uuid']}/actions/start")
    assert vm(api, created["uuid"])["state"] == "Running"
    (again,) = hypervisor.vms[created["uuid"]].spec.nics
    assert again.dhcp == nic.dhcp


def test_the_server_address_goes_with_the_network(api, cloud, running_hosts):
    uuid = api.do("POST", "/v1/vm-instances", cloud.vm_request("short-lived"))["uuid"]
    range_uuid = api.get(f"/v1/l3-networks/{cloud.l3}").json()["inventory"]["ipRanges"][0][
        "uuid"]
    # A VM's address keeps the range...
    refused = api.request("DELETE", f"/v1/l3-networks/ip-ranges/{range_uuid}")
    assert refused.status_code == 409, refused.text
    api.do("DELETE", f"/v1/vm-instances/{uuid}")
    api.do("PUT", f"/v1/vm-instances/{uuid}/actions/expunge")
    # ... the DHCP server's does not.
    deleted = api.request("DELETE", f"/v1/l3-networks/ip-ranges/{range_uuid}")
    assert deleted.status_code in (200, 202, 204), deleted.text
    if deleted.status_code == 202:
        assert api.wait_job(deleted.json()["jobUuid"])["state"] == "Succeeded"
    with running_hosts.db.session() as db:
        assert db.scalars(select(UsedIp).where(UsedIp.l3_network_uuid == cloud.l3)).all() == []
        assert_no_leaks(db)
