"""Behaviour of the infrastructure resources a user builds a cloud from: zones, clusters,
primary and backup storage, images, offerings, L2 and L3 networks with their IP ranges and
DNS, and the tags a create call carries. Every test runs on SQLite and on MySQL."""
from __future__ import annotations

import time
import uuid as uuid_module
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from tests.support.api import ApiClient

Json = dict[str, Any]

GIB = 1024 ** 3
MIB = 1024 ** 2
UNKNOWN_UUID = "0123456789abcdef0123456789abcdef"


# --- helpers ------------------------------------------------------------------------------

def unique(prefix: str) -> str:
    return f"{prefix}-{uuid_module.uuid4().hex[:8]}"


def error_of(reply: httpx.Response, status: int) -> Json:
    """The error body of a reply that must have failed with ``status``."""
    assert reply.status_code == status, f"expected {status}, got {reply.status_code}: {reply.text}"
    error = reply.json()["error"]
    assert error["code"] and error["message"], error
    return error


def refused(api: ApiClient, method: str, path: str, body: Json | None, status: int) -> Json:
    """Send a call that must be refused synchronously (no job) and return its error."""
    return error_of(api.request(method, path, json=body), status)


def inventory(api: ApiClient, path: str) -> Json:
    reply = api.get(path)
    assert reply.status_code == 200, reply.text
    return reply.json()["inventory"]


def inventories(api: ApiClient, path: str) -> list[Json]:
    reply = api.get(path)
    assert reply.status_code == 200, reply.text
    return reply.json()["inventories"]


def uuids(items: list[Json]) -> set[str]:
    return {item["uuid"] for item in items}


def assert_gone(api: ApiClient, path: str) -> None:
    error_of(api.get(path), 404)


def create_zone(api: ApiClient, name: str | None = None, **extra: Any) -> Json:
    return api.do("POST", "/v1/zones", {"name": name or unique("zone"), **extra})


def create_cluster(api: ApiClient, zone_uuid: str, name: str | None = None) -> Json:
    return api.do("POST", "/v1/clusters",
                  {"zoneUuid": zone_uuid, "name": name or unique("cluster")})


def add_local_storage(api: ApiClient, zone_uuid: str) -> Json:
    return api.do("POST", "/v1/primary-storage/local-storage",
                  {"zoneUuid": zone_uuid, "name": unique("local"), "url": "/var/lib/aerie"})


def add_image_store(api: ApiClient, **extra: Any) -> Json:
    body = {"name": unique("bs"), "url": "/var/lib/images", "hostname": "10.0.0.5", **extra}
    return api.do("POST", "/v1/backup-storage/image-store", body)


def create_no_vlan_l2(api: ApiClient, zone_uuid: str, interface: str = "eth0") -> Json:
    return api.do("POST", "/v1/l2-networks/no-vlan",
                  {"zoneUuid": zone_uuid, "name": unique("l2"), "physicalInterface": interface})


def create_vlan_l2(api: ApiClient, zone_uuid: str, vlan: int, interface: str = "eth0") -> Json:
    return api.do("POST", "/v1/l2-networks/vlan", {"zoneUuid": zone_uuid, "name": unique("vlan"),
                                                   "physicalInterface": interface, "vlan": vlan})


def create_l3(api: ApiClient, l2_uuid: str) -> Json:
    return api.do("POST", "/v1/l3-networks", {"l2NetworkUuid": l2_uuid, "name": unique("l3")})


def ip_range_body(start: str = "10.0.0.10", end: str = "10.0.0.100",
                  gateway: str = "10.0.0.1", netmask: str = "255.255.255.0") -> Json:
    return {"name": unique("range"), "startIp": start, "endIp": end, "netmask": netmask,
            "gateway": gateway}


@pytest.fixture
def zone(api: ApiClient) -> Json:
    return create_zone(api)


@pytest.fixture
def cluster(api: ApiClient, zone: Json) -> Json:
    return create_cluster(api, zone["uuid"])


@pytest.fixture
def l2(api: ApiClient, zone: Json) -> Json:
    return create_no_vlan_l2(api, zone["uuid"])


@pytest.fixture
def l3(api: ApiClient, l2: Json) -> Json:
    return create_l3(api, l2["uuid"])


# --- zones --------------------------------------------------------------------------------

def test_create_zone_answers_202_with_a_job_that_returns_the_zone(api: ApiClient) -> None:
    reply = api.request("POST", "/v1/zones", json={"name": "zone-a", "description": "first"})
    assert reply.status_code == 202, reply.text
    job_uuid = reply.json()["jobUuid"]
    assert reply.headers["Location"] == f"/v1/api-jobs/{job_uuid}"

    job = api.wait_job(job_uuid)
    assert job["state"] == "Succeeded", job
    zone = job["result"]
    assert len(zone["uuid"]) == 32
    assert job["resourceUuid"] == zone["uuid"]
    assert (zone["name"], zone["description"], zone["state"]) == ("zone-a", "first", "Enabled")

    assert inventory(api, f"/v1/zones/{zone['uuid']}") == zone


def test_list_zones_returns_every_zone(api: ApiClient) -> None:
    created = [create_zone(api, f"zone-{i}") for i in range(3)]
    listed = inventories(api, "/v1/zones")
    assert uuids(listed) == uuids(created)
    assert uuids(inventories(api, "/v1/zones?limit=2")) <= uuids(created)
    assert len(inventories(api, "/v1/zones?limit=2")) == 2


def test_update_zone_changes_name_and_description(api: ApiClient, zone: Json) -> None:
    time.sleep(0.01)  # lastOpDate has millisecond resolution on the wire
    updated = api.do("PUT", f"/v1/zones/{zone['uuid']}",
                     {"name": "renamed", "description": "new words"})
    assert (updated["name"], updated["description"]) == ("renamed", "new words")
    assert updated["lastOpDate"] > zone["lastOpDate"]
    assert updated["createDate"] == zone["createDate"]
    assert inventory(api, f"/v1/zones/{zone['uuid']}") == updated


def test_update_zone_keeps_fields_it_is_not_given(api: ApiClient) -> None:
    zone = create_zone(api, "keep", description="kept")
    updated = api.do("PUT", f"/v1/zones/{zone['uuid']}", {"name": "kept-name"})
    assert (updated["name"], updated["description"]) == ("kept-name", "kept")


def test_renaming_a_zone_to_a_taken_name_is_a_conflict(api: ApiClient) -> None:
    create_zone(api, "taken")
    other = create_zone(api, "other")
    error = refused(api, "PUT", f"/v1/zones/{other['uuid']}", {"name": "taken"}, 409)
    assert "taken" in error["message"]
    assert inventory(api, f"/v1/zones/{other['uuid']}")["name"] == "other"


def test_change_zone_state_disables_and_enables(api: ApiClient, zone: Json) -> None:
    path = f"/v1/zones/{zone['uuid']}/actions/change-state"
    assert api.do("PUT", path, {"stateEvent": "disable"})["state"] == "Disabled"
    assert inventory(api, f"/v1/zones/{zone['uuid']}")["state"] == "Disabled"
    assert api.do("PUT", path, {"stateEvent": "enable"})["state"] == "Enabled"
    error = refused(api, "PUT", path, {"stateEvent": "explode"}, 400)
    assert error["details"]["field"] == "stateEvent"


def test_duplicate_zone_name_is_refused_by_the_post_itself(api: ApiClient) -> None:
    first = create_zone(api, "dup")
    error = refused(api, "POST", "/v1/zones", {"name": "dup"}, 409)
    assert "dup" in error["message"]
    assert error["details"]["existingUuid"] == first["uuid"]
    assert uuids(inventories(api, "/v1/zones")) == {first["uuid"]}


@pytest.mark.parametrize(("method", "path", "body"), [
    ("GET", f"/v1/zones/{UNKNOWN_UUID}", None),
    ("PUT", f"/v1/zones/{UNKNOWN_UUID}", {"name": "x"}),
    ("PUT", f"/v1/zones/{UNKNOWN_UUID}/actions/change-state", {"stateEvent": "disable"}),
    ("DELETE", f"/v1/zones/{UNKNOWN_UUID}", None),
])
def test_unknown_zone_is_404(api: ApiClient, method: str, path: str, body: Json | None) -> None:
    error = refused(api, method, path, body, 404)
    assert UNKNOWN_UUID in error["message"]


def test_delete_zone(api: ApiClient, zone: Json) -> None:
    assert api.do("DELETE", f"/v1/zones/{zone['uuid']}") is None
    assert_gone(api, f"/v1/zones/{zone['uuid']}")
    assert inventories(api, "/v1/zones") == []


def test_deleting_a_zone_with_a_cluster_is_refused_and_names_the_cluster(
        api: ApiClient, zone: Json, cluster: Json) -> None:
    error = refused(api, "DELETE", f"/v1/zones/{zone['uuid']}", None, 409)
    assert cluster["name"] in error["message"]
    assert cluster["uuid"] in error["message"]
    assert error["details"]["dependents"]["Cluster"] == [cluster["uuid"]]
    assert inventory(api, f"/v1/zones/{zone['uuid']}")["uuid"] == zone["uuid"]
    assert inventory(api, f"/v1/clusters/{cluster['uuid']}")["uuid"] == cluster["uuid"]


def test_enforcing_delete_takes_the_zone_and_everything_in_it(
        api: ApiClient, zone: Json, cluster: Json) -> None:
    storage = add_local_storage(api, zone["uuid"])
    api.do("POST", f"/v1/clusters/{cluster['uuid']}/primary-storage/{storage['uuid']}")
    l2 = create_no_vlan_l2(api, zone["uuid"])
    api.do("POST", f"/v1/l2-networks/{l2['uuid']}/clusters/{cluster['uuid']}")
    l3 = create_l3(api, l2["uuid"])
    ip_range = api.do("POST", f"/v1/l3-networks/{l3['uuid']}/ip-ranges", ip_range_body())
    backup = add_image_store(api)
    api.do("POST", f"/v1/zones/{zone['uuid']}/backup-storage/{backup['uuid']}")
    # A zone that is left alone keeps what it has.
    bystander = create_zone(api)
    bystander_cluster = create_cluster(api, bystander["uuid"])

    api.do("DELETE", f"/v1/zones/{zone['uuid']}", params={"deleteMode": "Enforcing"})

    for path in (f"/v1/zones/{zone['uuid']}", f"/v1/clusters/{cluster['uuid']}",
                 f"/v1/primary-storage/{storage['uuid']}", f"/v1/l2-networks/{l2['uuid']}",
                 f"/v1/l3-networks/{l3['uuid']}", f"/v1/l3-networks/ip-ranges/{ip_range['uuid']}"):
        assert_gone(api, path)
    # Backup storage is not in a zone: it survives, no longer attached.
    assert inventory(api, f"/v1/backup-storage/{backup['uuid']}")["attachedZoneUuids"] == []
    assert uuids(inventories(api, "/v1/clusters")) == {bystander_cluster["uuid"]}


def test_delete_mode_must_be_known(api: ApiClient, zone: Json) -> None:
    reply = api.request("DELETE", f"/v1/zones/{zone['uuid']}", params={"deleteMode": "Maybe"})
    assert error_of(reply, 400)["details"]["field"] == "deleteMode"
    assert inventory(api, f"/v1/zones/{zone['uuid']}")["uuid"] == zone["uuid"]


# --- clusters -----------------------------------------------------------------------------

def test_create_cluster_in_a_zone(api: ApiClient, zone: Json) -> None:
    cluster = api.do("POST", "/v1/clusters", {"zoneUuid": zone["uuid"], "name": "c1",
                                              "hypervisorType": "Simulator"})
    assert (cluster["zoneUuid"], cluster["name"]) == (zone["uuid"], "c1")
    assert (cluster["hypervisorType"], cluster["state"]) == ("Simulator", "Enabled")
    assert inventory(api, f"/v1/clusters/{cluster['uuid']}") == cluster
    assert create_cluster(api, zone["uuid"])["hypervisorType"] == "KVM"


def test_cluster_in_an_unknown_zone_is_404_naming_zone_uuid(api: ApiClient) -> None:
    error = refused(api, "POST", "/v1/clusters", {"zoneUuid": UNKNOWN_UUID, "name": "c"}, 404)
    assert error["details"]["field"] == "zoneUuid"
    assert UNKNOWN_UUID in error["message"]


def test_cluster_hypervisor_type_must_be_known(api: ApiClient, zone: Json) -> None:
    error = refused(api, "POST", "/v1/clusters",
                    {"zoneUuid": zone["uuid"], "name": "c", "hypervisorType": "Xen"}, 400)
    assert error["details"]["field"] == "hypervisorType"
    assert inventories(api, "/v1/clusters") == []


def test_cluster_names_are_unique_within_a_zone_only(api: ApiClient, zone: Json) -> None:
    create_cluster(api, zone["uuid"], "shared")
    other_zone = create_zone(api)
    assert create_cluster(api, other_zone["uuid"], "shared")["zoneUuid"] == other_zone["uuid"]
    error = refused(api, "POST", "/v1/clusters", {"zoneUuid": zone["uuid"], "name": "shared"},
                    409)
    assert "shared" in error["message"]


def test_zone_change_state_does_not_touch_its_clusters(
        api: ApiClient, zone: Json, cluster: Json) -> None:
    api.do("PUT", f"/v1/clusters/{cluster['uuid']}/actions/change-state",
           {"stateEvent": "disable"})
    assert inventory(api, f"/v1/clusters/{cluster['uuid']}")["state"] == "Disabled"
    assert inventory(api, f"/v1/zones/{zone['uuid']}")["state"] == "Enabled"


# --- primary storage ----------------------------------------------------------------------

@pytest.mark.parametrize(("kind", "url", "type_"), [
    ("local-storage", "/var/lib/aerie", "LocalStorage"),
    ("nfs", "nfs.example.com:/exports/vm", "NFS"),
])
def test_add_primary_storage(api: ApiClient, zone: Json, kind: str, url: str,
                             type_: str) -> None:
    storage = api.do("POST", f"/v1/primary-storage/{kind}",
                     {"zoneUuid": zone["uuid"], "name": "ps", "url": url})
    assert (storage["type"], storage["url"], storage["zoneUuid"]) == (type_, url, zone["uuid"])
    assert storage["attachedClusterUuids"] == []
    assert inventory(api, f"/v1/primary-storage/{storage['uuid']}") == storage


@pytest.mark.parametrize(("kind", "url"), [
    ("local-storage", "relative/path"),
    ("nfs", "/no/server"),
    ("nfs", "server-without-path"),
    ("nfs", "server:relative"),
])
def test_primary_storage_url_is_checked(api: ApiClient, zone: Json, kind: str,
                                        url: str) -> None:
    error = refused(api, "POST", f"/v1/primary-storage/{kind}",
                    {"zoneUuid": zone["uuid"], "name": "ps", "url": url}, 400)
    assert error["details"]["field"] == "url"
    assert inventories(api, "/v1/primary-storage") == []


def test_primary_storage_in_an_unknown_zone_is_404(api: ApiClient) -> None:
    error = refused(api, "POST", "/v1/primary-storage/local-storage",
                    {"zoneUuid": UNKNOWN_UUID, "name": "ps", "url": "/data"}, 404)
    assert error["details"]["field"] == "zoneUuid"


def test_attach_and_detach_primary_storage(api: ApiClient, zone: Json, cluster: Json) -> None:
    storage = add_local_storage(api, zone["uuid"])
    path = f"/v1/clusters/{cluster['uuid']}/primary-storage/{storage['uuid']}"

    attached = api.do("POST", path)
    assert attached["attachedClusterUuids"] == [cluster["uuid"]]
    assert inventory(api, f"/v1/primary-storage/{storage['uuid']}")["attachedClusterUuids"] \
        == [cluster["uuid"]]
    assert storage["name"] in refused(api, "POST", path, None, 409)["message"]

    detached = api.do("DELETE", path)
    assert detached["attachedClusterUuids"] == []
    assert inventory(api, f"/v1/primary-storage/{storage['uuid']}")["attachedClusterUuids"] == []
    refused(api, "DELETE", path, None, 409)  # not attached any more


def test_primary_storage_attaches_to_clusters_of_its_own_zone_only(
        api: ApiClient, zone: Json) -> None:
    storage = add_local_storage(api, zone["uuid"])
    foreign = create_cluster(api, create_zone(api)["uuid"])
    error = refused(api, "POST", f"/v1/clusters/{foreign['uuid']}/primary-storage/"
                    f"{storage['uuid']}", None, 400)
    assert "zone" in error["message"]
    assert inventory(api, f"/v1/primary-storage/{storage['uuid']}")["attachedClusterUuids"] == []


def test_attach_primary_storage_to_an_unknown_cluster_is_404(api: ApiClient, zone: Json) -> None:
    storage = add_local_storage(api, zone["uuid"])
    error = refused(api, "POST", f"/v1/clusters/{UNKNOWN_UUID}/primary-storage/"
                    f"{storage['uuid']}", None, 404)
    assert error["details"]["field"] == "clusterUuid"


def test_deleting_a_cluster_detaches_its_primary_storage(
        api: ApiClient, zone: Json, cluster: Json) -> None:
    storage = add_local_storage(api, zone["uuid"])
    api.do("POST", f"/v1/clusters/{cluster['uuid']}/primary-storage/{storage['uuid']}")
    api.do("DELETE", f"/v1/clusters/{cluster['uuid']}")
    assert inventory(api, f"/v1/primary-storage/{storage['uuid']}")["attachedClusterUuids"] == []


# --- backup storage -----------------------------------------------------------------------

def test_backup_storage_password_never_appears_in_a_reply(api: ApiClient, zone: Json) -> None:
    secret = "s3cret-Passw0rd"
    body = {"name": "store", "url": "/var/lib/images", "hostname": "10.0.0.5",
            "username": "root", "password": secret, "sshPort": 2222}
    replies: list[httpx.Response] = []

    accepted = api.request("POST", "/v1/backup-storage/image-store", json=body)
    replies.append(accepted)
    job_reply = api.get(accepted.headers["Location"])
    while job_reply.json()["state"] not in ("Succeeded", "Failed"):
        time.sleep(0.01)
        job_reply = api.get(accepted.headers["Location"])
    replies.append(job_reply)
    storage = job_reply.json()["result"]
    assert (storage["hostname"], storage["sshPort"]) == ("10.0.0.5", 2222)
    assert storage["type"] == "ImageStoreBackupStorage"

    attach = api.request("POST", f"/v1/zones/{zone['uuid']}/backup-storage/{storage['uuid']}")
    replies.append(attach)
    replies.append(api.get(f"/v1/api-jobs/{attach.json()['jobUuid']}"))
    api.wait_job(attach.json()["jobUuid"])
    replies += [api.get(f"/v1/backup-storage/{storage['uuid']}"), api.get("/v1/backup-storage"),
                api.get("/v1/api-jobs")]
    for reply in replies:
        assert reply.status_code < 300, reply.text
        assert secret not in reply.text
        assert "password" not in reply.text.lower()


def test_attach_and_detach_backup_storage_to_a_zone(api: ApiClient, zone: Json) -> None:
    storage = add_image_store(api)
    assert storage["attachedZoneUuids"] == []
    path = f"/v1/zones/{zone['uuid']}/backup-storage/{storage['uuid']}"

    assert api.do("POST", path)["attachedZoneUuids"] == [zone["uuid"]]
    assert inventory(api, f"/v1/backup-storage/{storage['uuid']}")["attachedZoneUuids"] \
        == [zone["uuid"]]
    refused(api, "POST", path, None, 409)

    assert api.do("DELETE", path)["attachedZoneUuids"] == []


def test_attach_backup_storage_to_an_unknown_zone_is_404(api: ApiClient) -> None:
    storage = add_image_store(api)
    error = refused(api, "POST", f"/v1/zones/{UNKNOWN_UUID}/backup-storage/{storage['uuid']}",
                    None, 404)
    assert error["details"]["field"] == "zoneUuid"


# --- images -------------------------------------------------------------------------------

def test_add_image_on_backup_storage(api: ApiClient) -> None:
    storage = add_image_store(api)
    image = api.do("POST", "/v1/images", {
        "name": "ubuntu", "url": "http://mirror.example.com/ubuntu.qcow2",
        "backupStorageUuids": [storage["uuid"]], "platform": "Linux",
    })
    assert (image["name"], image["status"], image["format"]) == ("ubuntu", "Ready", "qcow2")
    assert image["backupStorageUuids"] == [storage["uuid"]]
    assert inventory(api, f"/v1/images/{image['uuid']}") == image
    assert uuids(inventories(api, "/v1/images")) == {image["uuid"]}


def test_image_on_unknown_backup_storage_is_404(api: ApiClient) -> None:
    error = refused(api, "POST", "/v1/images", {
        "name": "img", "url": "http://example.com/a.qcow2",
        "backupStorageUuids": [UNKNOWN_UUID],
    }, 404)
    assert error["details"]["field"] == "backupStorageUuids"
    assert inventories(api, "/v1/images") == []


@pytest.mark.parametrize("url", ["gopher://example.com/a.qcow2", "example.com/a.qcow2",
                                 "/local/path.qcow2"])
def test_image_url_scheme_is_checked(api: ApiClient, url: str) -> None:
    storage = add_image_store(api)
    error = refused(api, "POST", "/v1/images", {
        "name": "img", "url": url, "backupStorageUuids": [storage["uuid"]],
    }, 400)
    assert error["details"]["field"] == "url"
    assert inventories(api, "/v1/images") == []


def test_image_on_disabled_backup_storage_is_409(api: ApiClient) -> None:
    storage = add_image_store(api)
    api.do("PUT", f"/v1/backup-storage/{storage['uuid']}/actions/change-state",
           {"stateEvent": "disable"})
    error = refused(api, "POST", "/v1/images", {
        "name": "img", "url": "http://example.com/a.qcow2",
        "backupStorageUuids": [storage["uuid"]],
    }, 409)
    assert "Disabled" in error["message"]


def test_image_needs_at_least_one_backup_storage(api: ApiClient) -> None:
    error = refused(api, "POST", "/v1/images", {
        "name": "img", "url": "http://example.com/a.qcow2", "backupStorageUuids": [],
    }, 400)
    assert error["details"]["field"] == "backupStorageUuids"


# --- offerings ----------------------------------------------------------------------------

def test_create_instance_offering(api: ApiClient) -> None:
    offering = api.do("POST", "/v1/instance-offerings",
                      {"name": "small", "cpuNum": 2, "memorySize": 2 * GIB})
    assert (offering["cpuNum"], offering["memorySize"]) == (2, 2 * GIB)
    assert (offering["state"], offering["type"]) == ("Enabled", "UserVm")
    assert inventory(api, f"/v1/instance-offerings/{offering['uuid']}") == offering


@pytest.mark.parametrize(("fields", "field"), [
    ({"cpuNum": 0, "memorySize": GIB}, "cpuNum"),
    ({"cpuNum": 1, "memorySize": 16 * MIB - 1}, "memorySize"),
    ({"cpuNum": 1, "memorySize": 8 * MIB}, "memorySize"),
])
def test_instance_offering_limits(api: ApiClient, fields: Json, field: str) -> None:
    error = refused(api, "POST", "/v1/instance-offerings", {"name": "bad", **fields}, 400)
    assert error["details"]["field"] == field
    assert inventories(api, "/v1/instance-offerings") == []


def test_smallest_instance_offering_is_accepted(api: ApiClient) -> None:
    offering = api.do("POST", "/v1/instance-offerings",
                      {"name": "tiny", "cpuNum": 1, "memorySize": 16 * MIB})
    assert offering["memorySize"] == 16 * MIB


def test_create_disk_offering(api: ApiClient) -> None:
    offering = api.do("POST", "/v1/disk-offerings", {"name": "data", "diskSize": 10 * GIB})
    assert (offering["name"], offering["diskSize"]) == ("data", 10 * GIB)
    assert inventory(api, f"/v1/disk-offerings/{offering['uuid']}") == offering
    error = refused(api, "POST", "/v1/disk-offerings", {"name": "none", "diskSize": 0}, 400)
    assert error["details"]["field"] == "diskSize"


# --- L2 networks --------------------------------------------------------------------------

def test_create_no_vlan_and_vlan_l2_networks(api: ApiClient, zone: Json) -> None:
    plain = create_no_vlan_l2(api, zone["uuid"], "eth1")
    assert (plain["type"], plain["physicalInterface"], plain["vlan"]) \
        == ("L2NoVlanNetwork", "eth1", None)
    tagged = create_vlan_l2(api, zone["uuid"], 100, "eth1")
    assert (tagged["type"], tagged["vlan"], tagged["zoneUuid"]) \
        == ("L2VlanNetwork", 100, zone["uuid"])
    assert tagged["attachedClusterUuids"] == []
    assert uuids(inventories(api, "/v1/l2-networks")) == {plain["uuid"], tagged["uuid"]}


@pytest.mark.parametrize("vlan", [0, 4095, 5000, -1])
def test_vlan_id_out_of_range_is_400(api: ApiClient, zone: Json, vlan: int) -> None:
    error = refused(api, "POST", "/v1/l2-networks/vlan", {
        "zoneUuid": zone["uuid"], "name": "v", "physicalInterface": "eth0", "vlan": vlan,
    }, 400)
    assert error["details"]["field"] == "vlan"


def test_same_vlan_on_the_same_interface_twice_in_a_zone_is_409(
        api: ApiClient, zone: Json) -> None:
    first = create_vlan_l2(api, zone["uuid"], 10, "eth0")
    error = refused(api, "POST", "/v1/l2-networks/vlan", {
        "zoneUuid": zone["uuid"], "name": "again", "physicalInterface": "eth0", "vlan": 10,
    }, 409)
    assert first["uuid"] in error["message"]
    # The same VLAN elsewhere is a different wire.
    create_vlan_l2(api, zone["uuid"], 10, "eth1")
    create_vlan_l2(api, create_zone(api)["uuid"], 10, "eth0")


def test_attach_and_detach_l2_network(api: ApiClient, zone: Json, cluster: Json,
                                      l2: Json) -> None:
    path = f"/v1/l2-networks/{l2['uuid']}/clusters/{cluster['uuid']}"
    assert api.do("POST", path)["attachedClusterUuids"] == [cluster["uuid"]]
    assert inventory(api, f"/v1/l2-networks/{l2['uuid']}")["attachedClusterUuids"] \
        == [cluster["uuid"]]
    refused(api, "POST", path, None, 409)
    assert api.do("DELETE", path)["attachedClusterUuids"] == []
    assert inventory(api, f"/v1/l2-networks/{l2['uuid']}")["attachedClusterUuids"] == []


def test_l2_network_attaches_to_clusters_of_its_own_zone_only(api: ApiClient, l2: Json) -> None:
    foreign = create_cluster(api, create_zone(api)["uuid"])
    refused(api, "POST", f"/v1/l2-networks/{l2['uuid']}/clusters/{foreign['uuid']}", None, 400)


def test_two_l2_networks_on_one_interface_cannot_share_a_cluster(
        api: ApiClient, zone: Json, cluster: Json) -> None:
    first = create_no_vlan_l2(api, zone["uuid"], "eth0")
    second = create_no_vlan_l2(api, zone["uuid"], "eth0")
    api.do("POST", f"/v1/l2-networks/{first['uuid']}/clusters/{cluster['uuid']}")
    error = refused(api, "POST", f"/v1/l2-networks/{second['uuid']}/clusters/{cluster['uuid']}",
                    None, 409)
    assert first["uuid"] in error["message"]
    assert error["details"]["conflictingL2NetworkUuid"] == first["uuid"]
    # Another interface, or a VLAN on the same one, is a different wire.
    other = create_no_vlan_l2(api, zone["uuid"], "eth1")
    api.do("POST", f"/v1/l2-networks/{other['uuid']}/clusters/{cluster['uuid']}")
    vlan = create_vlan_l2(api, zone["uuid"], 20, "eth0")
    api.do("POST", f"/v1/l2-networks/{vlan['uuid']}/clusters/{cluster['uuid']}")


def test_deleting_an_l2_network_with_an_l3_network_needs_enforcing(
        api: ApiClient, l2: Json, l3: Json) -> None:
    error = refused(api, "DELETE", f"/v1/l2-networks/{l2['uuid']}", None, 409)
    assert l3["name"] in error["message"]
    api.do("DELETE", f"/v1/l2-networks/{l2['uuid']}", params={"deleteMode": "Enforcing"})
    assert_gone(api, f"/v1/l3-networks/{l3['uuid']}")


# --- L3 networks, IP ranges, DNS ----------------------------------------------------------

def test_create_l3_network_on_an_l2_network(api: ApiClient, zone: Json, l2: Json) -> None:
    l3 = api.do("POST", "/v1/l3-networks", {"l2NetworkUuid": l2["uuid"], "name": "private",
                                            "category": "Private", "dnsDomain": "example.org"})
    assert (l3["l2NetworkUuid"], l3["zoneUuid"]) == (l2["uuid"], zone["uuid"])
    assert (l3["ipRanges"], l3["dns"], l3["dnsDomain"]) == ([], [], "example.org")
    assert inventory(api, f"/v1/l3-networks/{l3['uuid']}") == l3


def test_l3_network_on_an_unknown_l2_network_is_404(api: ApiClient) -> None:
    error = refused(api, "POST", "/v1/l3-networks",
                    {"l2NetworkUuid": UNKNOWN_UUID, "name": "l3"}, 404)
    assert error["details"]["field"] == "l2NetworkUuid"


def test_add_ip_range(api: ApiClient, l3: Json) -> None:
    ip_range = api.do("POST", f"/v1/l3-networks/{l3['uuid']}/ip-ranges", ip_range_body())
    assert ip_range["l3NetworkUuid"] == l3["uuid"]
    assert (ip_range["startIp"], ip_range["endIp"], ip_range["gateway"]) \
        == ("10.0.0.10", "10.0.0.100", "10.0.0.1")
    assert (ip_range["netmask"], ip_range["networkCidr"], ip_range["prefixLen"]) \
        == ("255.255.255.0", "10.0.0.0/24", 24)

    listed = inventory(api, f"/v1/l3-networks/{l3['uuid']}")["ipRanges"]
    assert listed == [ip_range]
    assert inventory(api, f"/v1/l3-networks/ip-ranges/{ip_range['uuid']}") == ip_range


def test_a_second_range_in_the_same_network_is_accepted(api: ApiClient, l3: Json) -> None:
    path = f"/v1/l3-networks/{l3['uuid']}/ip-ranges"
    api.do("POST", path, ip_range_body("10.0.0.10", "10.0.0.50"))
    api.do("POST", path, ip_range_body("10.0.0.51", "10.0.0.90"))
    assert len(inventory(api, f"/v1/l3-networks/{l3['uuid']}")["ipRanges"]) == 2


@pytest.mark.parametrize(("body", "field"), [
    (ip_range_body(start="10.0.0.100", end="10.0.0.10"), "startIp"),
    (ip_range_body(gateway="10.0.0.50"), "gateway"),
    (ip_range_body(gateway="10.0.1.1"), "gateway"),
    (ip_range_body(end="10.0.1.20"), "endIp"),
    (ip_range_body(start="10.0.0.0", gateway="10.0.0.254"), "startIp"),
    (ip_range_body(end="10.0.0.255"), "endIp"),
    (ip_range_body(netmask="255.0.255.0"), "netmask"),
])
def test_inconsistent_ip_range_is_400(api: ApiClient, l3: Json, body: Json, field: str) -> None:
    error = refused(api, "POST", f"/v1/l3-networks/{l3['uuid']}/ip-ranges", body, 400)
    assert error["details"]["field"] == field
    assert inventory(api, f"/v1/l3-networks/{l3['uuid']}")["ipRanges"] == []


@pytest.mark.parametrize("field", ["startIp", "endIp", "gateway"])
def test_invalid_ip_address_is_400_naming_the_field(api: ApiClient, l3: Json,
                                                     field: str) -> None:
    body = {**ip_range_body(), field: "10.0.0.300"}
    error = refused(api, "POST", f"/v1/l3-networks/{l3['uuid']}/ip-ranges", body, 400)
    assert error["details"]["field"] == field
    assert field in error["message"]


@pytest.mark.parametrize(("start", "end"), [
    ("10.0.0.50", "10.0.0.150"),  # overlaps the end
    ("10.0.0.5", "10.0.0.10"),  # touches the start
    ("10.0.0.20", "10.0.0.30"),  # inside
    ("10.0.0.2", "10.0.0.200"),  # around
])
def test_overlapping_ip_range_is_409(api: ApiClient, l3: Json, start: str, end: str) -> None:
    path = f"/v1/l3-networks/{l3['uuid']}/ip-ranges"
    existing = api.do("POST", path, ip_range_body("10.0.0.10", "10.0.0.100"))
    error = refused(api, "POST", path, ip_range_body(start, end), 409)
    assert error["details"]["existingIpRangeUuid"] == existing["uuid"]
    assert len(inventory(api, f"/v1/l3-networks/{l3['uuid']}")["ipRanges"]) == 1


def test_range_in_another_network_on_the_same_l3_is_409(api: ApiClient, l3: Json) -> None:
    path = f"/v1/l3-networks/{l3['uuid']}/ip-ranges"
    api.do("POST", path, ip_range_body())
    refused(api, "POST", path, ip_range_body("10.0.5.10", "10.0.5.20", "10.0.5.1"), 409)


def test_add_ip_range_by_network_cidr(api: ApiClient, l3: Json) -> None:
    ip_range = api.do("POST", f"/v1/l3-networks/{l3['uuid']}/ip-ranges/by-cidr",
                      {"name": "whole", "networkCidr": "10.0.1.0/24"})
    assert (ip_range["startIp"], ip_range["endIp"], ip_range["gateway"]) \
        == ("10.0.1.2", "10.0.1.254", "10.0.1.1")
    assert (ip_range["netmask"], ip_range["networkCidr"]) == ("255.255.255.0", "10.0.1.0/24")
    assert uuids(inventory(api, f"/v1/l3-networks/{l3['uuid']}")["ipRanges"]) \
        == {ip_range["uuid"]}


def test_ip_range_by_cidr_with_the_last_host_as_gateway(api: ApiClient, l3: Json) -> None:
    ip_range = api.do("POST", f"/v1/l3-networks/{l3['uuid']}/ip-ranges/by-cidr",
                      {"name": "whole", "networkCidr": "10.0.2.0/24", "gateway": "10.0.2.254"})
    assert (ip_range["startIp"], ip_range["endIp"], ip_range["gateway"]) \
        == ("10.0.2.1", "10.0.2.253", "10.0.2.254")


@pytest.mark.parametrize("cidr", ["10.0.1.5/24", "10.0.1.0/33", "not-a-cidr", "10.0.1.0/30"])
def test_bad_network_cidr_is_400(api: ApiClient, l3: Json, cidr: str) -> None:
    error = refused(api, "POST", f"/v1/l3-networks/{l3['uuid']}/ip-ranges/by-cidr",
                    {"name": "whole", "networkCidr": cidr}, 400)
    assert error["details"]["field"] == "networkCidr"


def test_query_ip_ranges_lists_ranges_of_every_l3_network(api: ApiClient, l2: Json,
                                                          l3: Json) -> None:
    other = create_l3(api, l2["uuid"])
    first = api.do("POST", f"/v1/l3-networks/{l3['uuid']}/ip-ranges", ip_range_body())
    second = api.do("POST", f"/v1/l3-networks/{other['uuid']}/ip-ranges/by-cidr",
                    {"name": "other", "networkCidr": "192.168.0.0/24"})
    listed = {r["uuid"]: r for r in inventories(api, "/v1/l3-networks/ip-ranges")}
    assert listed == {first["uuid"]: first, second["uuid"]: second}


def test_add_and_remove_dns(api: ApiClient, l3: Json) -> None:
    path = f"/v1/l3-networks/{l3['uuid']}/dns"
    assert api.do("POST", path, {"dns": "8.8.8.8"})["dns"] == ["8.8.8.8"]
    assert api.do("POST", path, {"dns": "1.1.1.1"})["dns"] == ["8.8.8.8", "1.1.1.1"]
    assert inventory(api, f"/v1/l3-networks/{l3['uuid']}")["dns"] == ["8.8.8.8", "1.1.1.1"]

    assert "8.8.8.8" in refused(api, "POST", path, {"dns": "8.8.8.8"}, 409)["message"]
    assert refused(api, "POST", path, {"dns": "dns.google"}, 400)["details"]["field"] == "dns"

    assert api.do("DELETE", f"{path}/8.8.8.8")["dns"] == ["1.1.1.1"]
    assert inventory(api, f"/v1/l3-networks/{l3['uuid']}")["dns"] == ["1.1.1.1"]
    refused(api, "DELETE", f"{path}/8.8.8.8", None, 409)  # no longer there


def test_dns_is_removed_by_the_address_it_was_added_with(api: ApiClient, l3: Json) -> None:
    path = f"/v1/l3-networks/{l3['uuid']}/dns"
    assert api.do("POST", path, {"dns": "2001:DB8::1"})["dns"] == ["2001:db8::1"]
    refused(api, "POST", path, {"dns": "2001:db8:0::1"}, 409)  # the same address
    assert api.do("DELETE", f"{path}/2001:DB8::1")["dns"] == []
    assert refused(api, "DELETE", f"{path}/not-an-ip", None, 400)["details"]["field"] == "dns"


def test_deleting_an_l3_network_deletes_its_ip_ranges(api: ApiClient, l3: Json) -> None:
    kept_l3 = create_l3(api, l3["l2NetworkUuid"])
    doomed = api.do("POST", f"/v1/l3-networks/{l3['uuid']}/ip-ranges", ip_range_body())
    kept = api.do("POST", f"/v1/l3-networks/{kept_l3['uuid']}/ip-ranges", ip_range_body())
    api.do("POST", f"/v1/l3-networks/{l3['uuid']}/dns", {"dns": "8.8.8.8"})

    api.do("DELETE", f"/v1/l3-networks/{l3['uuid']}")

    assert_gone(api, f"/v1/l3-networks/{l3['uuid']}")
    assert_gone(api, f"/v1/l3-networks/ip-ranges/{doomed['uuid']}")
    assert uuids(inventories(api, "/v1/l3-networks/ip-ranges")) == {kept["uuid"]}


# --- tags ---------------------------------------------------------------------------------

def _user_tags_of(resource_uuid: str) -> list[tuple[str, str]]:
    from chalicelib import runtime
    from chalicelib.db.models import UserTag

    with runtime.current().db.session() as session:
        rows = session.scalars(select(UserTag).where(UserTag.resource_uuid == resource_uuid)
                               .order_by(UserTag.tag))
        return [(row.resource_type, row.tag) for row in rows]


def test_user_tags_on_create_are_stored(api: ApiClient, zone: Json) -> None:
    cluster = api.do("POST", "/v1/clusters", {"zoneUuid": zone["uuid"], "name": "tagged",
                                              "userTags": ["team:storage", "env=prod"]})
    assert _user_tags_of(cluster["uuid"]) == [("Cluster", "env=prod"),
                                              ("Cluster", "team:storage")]
    assert _user_tags_of(zone["uuid"]) == []


def test_deleting_a_resource_deletes_its_user_tags(api: ApiClient) -> None:
    zone = create_zone(api, userTags=["mine"])
    assert _user_tags_of(zone["uuid"]) == [("Zone", "mine")]
    api.do("DELETE", f"/v1/zones/{zone['uuid']}")
    assert _user_tags_of(zone["uuid"]) == []


def test_unknown_system_tag_is_400_and_creates_nothing(api: ApiClient) -> None:
    error = refused(api, "POST", "/v1/zones", {"name": "z", "systemTags": ["nonsense::1"]}, 400)
    assert error["details"]["field"] == "systemTags"
    assert "nonsense::1" in error["message"]
    assert inventories(api, "/v1/zones") == []
