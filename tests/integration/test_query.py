"""The query API over HTTP: every operator, option, join direction, attachment-table join, tag
condition and ownership rule, on SQLite and on MySQL (the ``api`` fixture runs both)."""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from chalicelib.db.database import Database
from chalicelib.db.models import Account, Host, SystemTag, UserTag, VmInstance, VmNic
from chalicelib.query import add_join, remove_join
from tests.support.api import ApiClient
from tests.support.datacenter import GiB, building

PASSWORD = "alice-password-1"
Json = dict[str, Any]


@dataclass
class Cloud:
    """Two zones, each with a cluster, host, primary storage, L2 (attached to the cluster), L3
    with an IP range, and VMs with NICs; backup storage and an image in zone a only."""

    ids: dict[str, str]
    alice: ApiClient

    def __getitem__(self, name: str) -> str:
        return self.ids[name]


def _nic(session, vm: str, l3: str, ip: str, account: str, n: int) -> str:
    nic = VmNic(vm_instance_uuid=vm, l3_network_uuid=l3, ip=ip, mac=f"fa:16:3e:00:00:{n:02x}",
                name=f"nic-{n}", account_uuid=account, device_id=0)
    session.add(nic)
    session.flush()
    return nic.uuid


def _tag(session, model: type, resource: str, tag: str, account: str) -> None:
    session.add(model(resource_uuid=resource, resource_type="VmInstance", tag=tag,
                      account_uuid=account, type="System" if model is SystemTag else "User"))


@pytest.fixture
def cloud(api: ApiClient, db_url: str) -> Cloud:
    api.do("POST", "/v1/accounts", {"name": "alice", "password": PASSWORD})
    alice = ApiClient(api.http)
    alice.login("alice", PASSWORD)
    ids: dict[str, str] = {}
    db = Database(db_url)
    try:
        with building(db) as b:
            s = b.session
            alice_uuid = s.scalar(select(Account.uuid).where(Account.name == "alice"))
            ids["alice"] = alice_uuid
            for x in ("a", "b"):
                zone = ids[f"zone-{x}"] = b.zone(f"zone-{x}")
                cluster = ids[f"cluster-{x}"] = b.cluster(zone, f"cluster-{x}")
                ids[f"host-{x}"] = b.host(cluster, f"host-{x}", cpu=8 if x == "a" else 32)
                ids[f"ps-{x}"] = b.primary_storage(zone, [cluster], name=f"ps-{x}")
                l2 = ids[f"l2-{x}"] = b.l2(zone, [cluster], name=f"l2-{x}")
                l3 = ids[f"l3-{x}"] = b.l3(l2, name=f"l3-{x}")
                net = "10.0.0" if x == "a" else "10.1.0"
                ids[f"range-{x}"] = b.ip_range(l3, f"{net}.2", f"{net}.254", f"{net}.0/24",
                                               f"{net}.1")
            ids["l2-unattached"] = b.l2(ids["zone-b"], [], name="l2-unattached")
            ids["bs"] = b.backup_storage([ids["zone-a"]], name="bs-a")
            ids["image"] = b.image([ids["bs"]], name="image-a")
            specs = [("vm-web1", "a", 2, "Running", "10.0.0.5"),
                     ("vm-web2", "a", 4, "Stopped", "10.0.0.6"),
                     ("vm-db", "b", 8, "Running", "10.1.0.7")]
            for n, (name, x, cpu, state, ip) in enumerate(specs):
                vm = ids[name] = b.vm(name, cpu=cpu, memory=cpu * GiB, state=state)
                row = s.get(VmInstance, vm)
                row.zone_uuid, row.cluster_uuid = ids[f"zone-{x}"], ids[f"cluster-{x}"]
                row.host_uuid = ids[f"host-{x}"] if state == "Running" else None
                row.last_host_uuid = ids[f"host-{x}"]
                row.description = None if name == "vm-db" else f"{name} serves"
                ids[f"nic-{name}"] = _nic(s, vm, ids[f"l3-{x}"], ip, b.account, n)
            vm = ids["vm-alice"] = b.vm("vm-alice", cpu=1, state="Running")
            row = s.get(VmInstance, vm)
            row.account_uuid, row.zone_uuid = alice_uuid, ids["zone-a"]
            row.cluster_uuid, row.host_uuid = ids["cluster-a"], ids["host-a"]
            ids["nic-vm-alice"] = _nic(s, vm, ids["l3-a"], "10.0.0.9", alice_uuid, 9)
            _tag(s, SystemTag, ids["vm-web1"], "hostname::web1", b.account)
            _tag(s, SystemTag, ids["vm-web2"], "hostname::web2", b.account)
            _tag(s, UserTag, ids["vm-web1"], "web-frontend", b.account)
            _tag(s, UserTag, ids["vm-db"], "database", b.account)
            _tag(s, UserTag, ids["vm-alice"], "web-alice", alice_uuid)
    finally:
        db.dispose()
    return Cloud(ids, alice)


def query(client: ApiClient, path: str, *conditions: str, **options: Any) -> httpx.Response:
    params: list[tuple[str, Any]] = [("q", c) for c in conditions]
    params += [(k, str(v).lower() if isinstance(v, bool) else v) for k, v in options.items()]
    return client.get(path, params=params)


def found(client: ApiClient, path: str, *conditions: str, **options: Any) -> list[Json]:
    reply = query(client, path, *conditions, **options)
    assert reply.status_code == 200, reply.text
    return reply.json()["inventories"]


def names(client: ApiClient, path: str, *conditions: str, **options: Any) -> set[str]:
    return {i["name"] for i in found(client, path, *conditions, **options)}


def refused(client: ApiClient, path: str, *conditions: str, **options: Any) -> Json:
    reply = query(client, path, *conditions, **options)
    assert reply.status_code == 400, reply.text
    return reply.json()["error"]


VMS = "/v1/vm-instances"
ALL_VMS = {"vm-web1", "vm-web2", "vm-db", "vm-alice"}


# --- operators ------------------------------------------------------------------------------

def test_equal_and_not_equal(api: ApiClient, cloud: Cloud) -> None:
    assert names(api, VMS, "name=vm-web1") == {"vm-web1"}
    assert names(api, VMS, "name!=vm-web1") == ALL_VMS - {"vm-web1"}
    assert names(api, VMS, "uuid=" + cloud["vm-db"]) == {"vm-db"}


def test_ordering_operators_on_integers(api: ApiClient, cloud: Cloud) -> None:
    assert names(api, VMS, "cpuNum>2") == {"vm-web2", "vm-db"}
    assert names(api, VMS, "cpuNum>=2") == {"vm-web1", "vm-web2", "vm-db"}
    assert names(api, VMS, "cpuNum<2") == {"vm-alice"}
    assert names(api, VMS, "cpuNum<=2") == {"vm-alice", "vm-web1"}
    assert names(api, VMS, "cpuNum>1", "cpuNum<8") == {"vm-web1", "vm-web2"}  # ANDed
    assert names(api, VMS, f"memorySize={4 * GiB}") == {"vm-web2"}


def test_in_and_not_in(api: ApiClient, cloud: Cloud) -> None:
    assert names(api, VMS, "name?=vm-web1,vm-db,nothing") == {"vm-web1", "vm-db"}
    assert names(api, VMS, "name!?=vm-web1,vm-db") == {"vm-web2", "vm-alice"}
    assert names(api, VMS, "cpuNum?=2,8") == {"vm-web1", "vm-db"}


def test_like_and_not_like(api: ApiClient, cloud: Cloud) -> None:
    assert names(api, VMS, "name~=vm-web%") == {"vm-web1", "vm-web2"}
    assert names(api, VMS, "name~=vm-web_") == {"vm-web1", "vm-web2"}
    assert names(api, VMS, "name!~=vm-web%") == {"vm-db", "vm-alice"}
    # A row with no value is "not like" anything.
    assert names(api, VMS, "description!~=%serves") == {"vm-db", "vm-alice"}


def test_null_and_not_null(api: ApiClient, cloud: Cloud) -> None:
    assert names(api, VMS, "hostUuid=null") == {"vm-web2"}
    assert names(api, VMS, "hostUuid!=null") == ALL_VMS - {"vm-web2"}
    assert names(api, VMS, "description=null") == {"vm-db", "vm-alice"}


def test_booleans_and_datetimes_are_typed(api: ApiClient, cloud: Cloud) -> None:
    assert names(api, "/v1/l3-networks", "system=false") == {"l3-a", "l3-b"}
    assert names(api, "/v1/l3-networks", "system=true") == set()
    web1 = found(api, VMS, "name=vm-web1")[0]
    assert web1["createDate"].endswith("Z")
    assert names(api, VMS, "createDate<2000-01-01T00:00:00Z") == set()
    assert names(api, VMS, "createDate>2000-01-01T00:00:00+00:00") == ALL_VMS
    assert names(api, VMS, "createDate>=2000-01-01") == ALL_VMS
    assert names(api, VMS, "lastOpDate>2999-01-01T00:00:00") == set()


# --- options --------------------------------------------------------------------------------

def test_limit_start_and_sort(api: ApiClient, cloud: Cloud) -> None:
    by_cpu = [i["name"] for i in found(api, VMS, sort="+cpuNum")]
    assert by_cpu == ["vm-alice", "vm-web1", "vm-web2", "vm-db"]
    assert [i["name"] for i in found(api, VMS, sort="-cpuNum")] == by_cpu[::-1]
    assert [i["name"] for i in found(api, VMS, sort="cpuNum", limit=2, start=1)] == by_cpu[1:3]
    # '+' in a query string that was not percent-encoded arrives as a space.
    reply = api.get(f"{VMS}?sort=+name&limit=1")
    assert [i["name"] for i in reply.json()["inventories"]] == ["vm-alice"]
    assert len(found(api, VMS, limit=0)) == 0


def test_count_and_reply_with_count(api: ApiClient, cloud: Cloud) -> None:
    reply = query(api, VMS, "name~=vm-web%", count=True)
    assert reply.status_code == 200 and reply.json() == {"total": 2}
    body = query(api, VMS, "cpuNum>=1", replyWithCount=True, limit=1).json()
    assert body["total"] == 4 and len(body["inventories"]) == 1


def test_fields_projects_each_inventory(api: ApiClient, cloud: Cloud) -> None:
    items = found(api, VMS, "name=vm-db", fields="name,cpuNum")
    assert items == [{"uuid": cloud["vm-db"], "name": "vm-db", "cpuNum": 8}]
    error = refused(api, VMS, fields="name,nope")
    assert error["details"]["field"] == "fields" and "cpuNum" in error["details"]["valid"]


def test_limit_bounds(api: ApiClient, cloud: Cloud) -> None:
    assert len(found(api, VMS, limit=100_000)) == 4
    assert query(api, VMS, limit=100_001).status_code == 400
    assert query(api, VMS, start=-1).status_code == 400


# --- joins ----------------------------------------------------------------------------------

def test_join_one_to_many_from_zone_to_cluster(api: ApiClient, cloud: Cloud) -> None:
    assert names(api, "/v1/zones", "cluster.name=cluster-a") == {"zone-a"}
    assert names(api, "/v1/zones", "clusters.name=cluster-b") == {"zone-b"}


def test_join_many_to_one_over_three_hops(api: ApiClient, cloud: Cloud) -> None:
    assert names(api, "/v1/l3-networks/ip-ranges", "l3Network.l2Network.zone.name=zone-b") \
        == {f"{'10.1.0'}.2-10.1.0.254"}
    assert names(api, VMS, "host.name=host-a") == {"vm-web1", "vm-alice"}
    assert names(api, VMS, "cluster.zone.name=zone-b") == {"vm-db"}


def test_join_two_hops_down_does_not_duplicate_rows(api: ApiClient, cloud: Cloud) -> None:
    assert names(api, "/v1/zones", "vmInstance.vmNics.ip=10.0.0.5") == {"zone-a"}
    body = query(api, "/v1/zones", "vmInstance.vmNics.ip~=10.0.0.%", replyWithCount=True).json()
    assert [i["name"] for i in body["inventories"]] == ["zone-a"] and body["total"] == 1
    assert names(api, "/v1/zones", "vmInstance.vmNics.l3Network.name=l3-b") == {"zone-b"}


def test_joins_through_attachment_tables(api: ApiClient, cloud: Cloud) -> None:
    assert names(api, "/v1/l2-networks", "cluster.name=cluster-a") == {"l2-a"}
    assert names(api, "/v1/clusters", "l2Network.name=l2-b") == {"cluster-b"}
    assert names(api, "/v1/primary-storage", "clusters.name=cluster-b") == {"ps-b"}
    assert names(api, "/v1/zones", "backupStorage.name=bs-a") == {"zone-a"}
    assert names(api, "/v1/images", "backupStorage.zone.name=zone-a") == {"image-a"}
    assert names(api, "/v1/images", "backupStorage.zone.name=zone-b") == set()
    assert names(api, "/v1/backup-storage", "images.name=image-a") == {"bs-a"}
    # Through an attachment table and back: zones whose L2 networks serve cluster-b.
    assert names(api, "/v1/zones", "l2Network.cluster.name=cluster-b") == {"zone-b"}


def test_a_join_path_back_to_the_same_kind(api: ApiClient, cloud: Cloud) -> None:
    assert names(api, "/v1/zones", "cluster.zone.name=zone-a") == {"zone-a"}
    assert names(api, VMS, "host.vmInstance.name=vm-web1") == {"vm-web1", "vm-alice"}


def test_a_join_the_orm_does_not_have(api: ApiClient, cloud: Cloud) -> None:
    add_join(VmInstance, "lastHost", Host, on=lambda vm, host: vm.last_host_uuid == host.uuid)
    try:
        assert names(api, VMS, "lastHost.name=host-a") == {"vm-web1", "vm-web2"}
        assert names(api, VMS, "lastHost.cluster.name=cluster-b") == {"vm-db"}
        meta = api.get("/v1/query-metadata").json()
        assert meta["resources"]["VmInstance"]["joins"]["lastHost"] == "Host"
    finally:
        remove_join(VmInstance, "lastHost")
    assert refused(api, VMS, "lastHost.name=host-a")["details"]["field"] == "q"


# --- tags -----------------------------------------------------------------------------------

def test_system_and_user_tag_conditions(api: ApiClient, cloud: Cloud) -> None:
    assert names(api, VMS, "__systemTag__=hostname::web1") == {"vm-web1"}
    assert names(api, VMS, "__systemTag__~=hostname::%") == {"vm-web1", "vm-web2"}
    assert names(api, VMS, "__userTag__~=web%") == {"vm-web1", "vm-alice"}
    assert names(api, VMS, "__userTag__?=database,none") == {"vm-db"}
    assert names(api, VMS, "__userTag__!=database") == ALL_VMS - {"vm-db"}
    assert names(api, "/v1/zones", "vmInstance.__systemTag__=hostname::web2") == {"zone-a"}
    assert refused(api, VMS, "__userTag__>a")["details"]["valid"] == [
        "=", "!=", "?=", "!?=", "~=", "!~="]


# --- ownership ------------------------------------------------------------------------------

def test_a_normal_account_sees_only_its_own_rows(api: ApiClient, cloud: Cloud) -> None:
    alice = cloud.alice
    assert names(alice, VMS) == {"vm-alice"}
    assert names(alice, VMS, "name~=vm%") == {"vm-alice"}
    assert names(alice, VMS, "name=vm-web1") == set()
    assert query(alice, VMS, count=True).json() == {"total": 1}
    assert names(alice, VMS, "vmNics.ip=10.0.0.9") == {"vm-alice"}
    assert names(alice, VMS, "__userTag__~=web%") == {"vm-alice"}


def test_joins_never_reach_another_accounts_rows(api: ApiClient, cloud: Cloud) -> None:
    alice = cloud.alice
    # Alice's VM runs on admin's host-a, but she cannot probe the host through a condition.
    assert names(api, VMS, "host.name=host-a") >= {"vm-alice"}
    assert names(alice, VMS, "host.name=host-a") == set()
    assert names(alice, VMS, "host.name~=%") == set()
    assert names(alice, VMS, "vmNics.l3Network.name=l3-a") == set()
    assert names(alice, "/v1/l3-networks") == set()


def test_admin_only_kinds_stay_admin_only(api: ApiClient, cloud: Cloud) -> None:
    reply = query(cloud.alice, "/v1/zones", "name=zone-a")
    assert reply.status_code == 403, reply.text
    assert query(cloud.alice, "/v1/hosts").status_code == 403
    assert names(api, "/v1/hosts", "vmInstance.name=vm-alice") == {"host-a"}


# --- bad input ------------------------------------------------------------------------------

def test_unknown_field_names_the_valid_ones(api: ApiClient, cloud: Cloud) -> None:
    error = refused(api, "/v1/zones", "nope=1")
    assert error["code"] == "InvalidArgument"
    assert error["details"]["field"] == "q" and error["details"]["condition"] == "nope=1"
    assert {"name", "state", "createDate", "cluster", "vmInstances", "__userTag__"} \
        <= set(error["details"]["valid"])


def test_unknown_join_names_the_joins_at_that_hop(api: ApiClient, cloud: Cloud) -> None:
    error = refused(api, "/v1/zones", "cluster.nope.name=x")
    assert "hosts" in error["details"]["valid"] and "zone" in error["details"]["valid"]
    assert "nope" in error["message"]


def test_bad_operators_and_values(api: ApiClient, cloud: Cloud) -> None:
    assert "~=" in refused(api, VMS, "name")["details"]["valid"]
    assert refused(api, VMS, "cpuNum~=1%")["details"]["valid"] == [
        "=", "!=", ">", ">=", "<", "<=", "?=", "!?="]
    assert "integer" in refused(api, VMS, "cpuNum=two")["message"]
    assert "integer" in refused(api, VMS, "cpuNum?=1,x")["message"]
    assert refused(api, "/v1/l3-networks", "system=yes")["details"]["valid"] == ["true or false"]
    assert "datetime" in refused(api, VMS, "createDate>yesterday")["message"]
    assert refused(api, VMS, sort="+nope")["details"]["field"] == "sort"
    assert refused(api, VMS, sort="host.name")["details"]["field"] == "sort"


def test_injection_through_values_and_names_goes_nowhere(api: ApiClient, cloud: Cloud) -> None:
    assert names(api, "/v1/zones", "name=x' OR '1'='1") == set()
    assert names(api, "/v1/zones", "name~=%' OR 1=1 -- ") == set()
    assert names(api, "/v1/zones", "name?=zone-a') OR ('1'='1") == set()
    for bad in ("name;drop table zones=1", "name) OR (1=1=1", "name/**/=1", "zones.uuid=1",
                "__class__=1", "metadata=1", "name =zone-a"):
        error = refused(api, "/v1/zones", bad)
        assert error["details"]["condition"] == bad
    assert names(api, "/v1/zones") == {"zone-a", "zone-b"}  # still there


def test_secrets_are_not_queryable(api: ApiClient, cloud: Cloud) -> None:
    for path, field in (("/v1/hosts", "tokenHash"), ("/v1/hosts", "sshPassword"),
                        ("/v1/backup-storage", "password")):
        error = refused(api, path, f"{field}!=null")
        assert field not in error["details"]["valid"]
    error = refused(api, "/v1/zones", "backupStorage.password=x")
    assert "password" not in error["details"]["valid"]
    assert refused(api, VMS, "name=x", fields="host")["details"]["field"] == "fields"
    meta = api.get("/v1/query-metadata").json()
    assert "password" not in meta["resources"]["BackupStorage"]["fields"]
    assert "passwordHash" not in meta["resources"]["Account"]["fields"]


# --- metadata -------------------------------------------------------------------------------

def test_query_metadata_shape(api: ApiClient, cloud: Cloud) -> None:
    for client in (api, cloud.alice):
        reply = client.get("/v1/query-metadata")
        assert reply.status_code == 200, reply.text
    meta = reply.json()
    assert set(meta) == {"resources", "operators", "tagFields"}
    assert meta["operators"] == ["=", "!=", ">", ">=", "<", "<=", "?=", "!?=", "~=", "!~="]
    assert meta["tagFields"] == ["__systemTag__", "__userTag__"]
    zone = meta["resources"]["Zone"]
    assert set(zone) == {"operation", "path", "fields", "joins"}
    assert zone["operation"] == "QueryZone" and zone["path"] == "/v1/zones"
    assert zone["fields"]["uuid"] == "string" and zone["fields"]["createDate"] == "datetime"
    assert zone["joins"]["cluster"] == "Cluster" and zone["joins"]["clusters"] == "Cluster"
    vm = meta["resources"]["VmInstance"]
    assert vm["fields"]["cpuNum"] == "integer" and vm["joins"]["vmNics"] == "VmNic"
    assert meta["resources"]["L3Network"]["fields"]["system"] == "boolean"
    # A kind only reachable by a join is described too, without an operation of its own.
    assert meta["resources"]["VmNic"]["operation"] is None
    assert meta["resources"]["VmNic"]["fields"]["ip"] == "string"
    types = {t for r in meta["resources"].values() for t in r["fields"].values()}
    assert types <= {"string", "integer", "number", "boolean", "datetime"}
    for kind, resource in meta["resources"].items():
        for target in resource["joins"].values():
            assert target in meta["resources"], (kind, target)
    assert anonymous_refused(api)


def anonymous_refused(api: ApiClient) -> bool:
    return api.get("/v1/query-metadata", token="").status_code == 401


@pytest.fixture(autouse=True)
def _no_leftover_joins() -> Iterator[None]:
    yield
    remove_join(VmInstance, "lastHost")


@pytest.mark.parametrize("params", [
    {"q": "cpuNum=99999999999999999999999"},
    {"q": "createDate>9999-12-31T23:59:59-01:00"},
    {"q": "createDate<0001-01-01T00:00:00+01:00"},
    {"start": str(10**20)},
])
def test_values_out_of_any_range_are_a_400_not_a_500(api, params):
    reply = api.get("/v1/vm-instances", params=params)
    assert reply.status_code == 400, reply.text


def test_accounts_take_conditions_too(api):
    (admin,) = api.get("/v1/accounts", params={"q": "name=admin"}).json()["inventories"]
    assert admin["name"] == "admin"
    assert api.get("/v1/accounts", params={"q": "name=nobody"}).json()["inventories"] == []
