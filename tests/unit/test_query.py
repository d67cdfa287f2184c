"""The query engine without a database: parsing conditions, the join graph derived from the
mappers, typed values, compiled SQL shape and the metadata document."""
from __future__ import annotations

import pytest
from sqlalchemy.dialects import mysql, sqlite

from chalicelib.api.registry import OPERATIONS
from chalicelib.context import Caller
from chalicelib.db.models import Host, IpRange, L2Network, VmInstance, Zone
from chalicelib.errors import InvalidArgument
from chalicelib.query import (
    OPERATORS,
    QuerySpec,
    add_join,
    compile_query,
    fields_of,
    joins_of,
    parse_condition,
    query_metadata,
    remove_join,
)


@pytest.mark.parametrize(("text", "path", "op", "value"), [
    ("name=web", ("name",), "=", "web"),
    ("name!=web", ("name",), "!=", "web"),
    ("cpuNum>2", ("cpuNum",), ">", "2"),
    ("cpuNum>=2", ("cpuNum",), ">=", "2"),
    ("cpuNum<2", ("cpuNum",), "<", "2"),
    ("cpuNum<=2", ("cpuNum",), "<=", "2"),
    ("name?=a,b", ("name",), "?=", "a,b"),
    ("name!?=a,b", ("name",), "!?=", "a,b"),
    ("name~=web%", ("name",), "~=", "web%"),
    ("name!~=web%", ("name",), "!~=", "web%"),
    ("name==x", ("name",), "=", "=x"),  # the value keeps what follows the operator
    ("a.b.c=>=1", ("a", "b", "c"), "=", ">=1"),
    ("vmInstance.vmNics.ip=10.0.0.5", ("vmInstance", "vmNics", "ip"), "=", "10.0.0.5"),
    ("__systemTag__=hostname::web1", ("__systemTag__",), "=", "hostname::web1"),
    ("description=", ("description",), "=", ""),
])
def test_conditions_split_at_the_longest_operator(text, path, op, value) -> None:
    condition = parse_condition(text)
    assert (*condition.joins, condition.field) == path
    assert (condition.op, condition.value) == (op, value)


@pytest.mark.parametrize("text", ["", "name", "=x", "na me=x", "name;drop=1", "a..b=1",
                                  ".a=1", "a.=1", "name\n=x"])
def test_malformed_conditions_list_the_operators(text) -> None:
    with pytest.raises(InvalidArgument) as caught:
        parse_condition(text)
    assert caught.value.details == {"field": "q", "condition": text, "valid": list(OPERATORS)}


def test_null_tests() -> None:
    assert parse_condition("hostUuid=null").is_null_test
    assert parse_condition("hostUuid!=null").is_null_test
    assert not parse_condition("hostUuid~=null").is_null_test


def test_joins_come_from_the_relationships_and_their_targets_kinds() -> None:
    zone = joins_of(Zone)
    assert zone["clusters"].target.__resource__ == "Cluster"
    assert zone["cluster"] is zone["clusters"]
    assert zone["vmInstance"].target is VmInstance
    assert joins_of(L2Network)["cluster"].relationship.secondary.name == \
        "l2_network_cluster_refs"
    assert joins_of(IpRange)["l3Network"].target.__resource__ == "L3Network"


def test_secrets_are_not_fields() -> None:
    assert "tokenHash" not in fields_of(Host) and "sshPassword" not in fields_of(Host)
    assert fields_of(VmInstance)["cpuNum"].type == "integer"
    assert fields_of(VmInstance)["createDate"].type == "datetime"


def sql(model, *conditions: str, caller: Caller | None = None, dialect=sqlite.dialect()) -> str:
    plan = compile_query(model, QuerySpec(conditions=conditions), caller)
    return str(plan.rows.compile(dialect=dialect))


def test_each_hop_is_a_semi_join_on_an_indexed_key() -> None:
    text = sql(Zone, "vmInstance.vmNics.ip=10.0.0.5")
    assert "zones.uuid IN (SELECT vm_instances.zone_uuid" in text
    assert "vm_instances.uuid IN (SELECT vm_nics.vm_instance_uuid" in text
    assert "JOIN" not in text.split("FROM zones")[1].split("ORDER BY")[0].replace(
        "IN (SELECT", "")
    for column in ("zone_uuid", "host_uuid", "cluster_uuid"):
        assert any(index.columns.keys()[0] == column for index in VmInstance.__table__.indexes)


def test_values_are_bound_never_inlined() -> None:
    text = sql(Zone, "name=x' OR '1'='1", "cluster.name?=a,b", dialect=mysql.dialect())
    assert "'1'" not in text and "x'" not in text and "zones.name = %s" in text


def test_a_normal_caller_is_restricted_on_every_hop_with_an_owner() -> None:
    caller = Caller(account_uuid="a" * 32, is_admin=False)
    where = sql(VmInstance, "host.cluster.name=c", caller=caller).split("WHERE", 1)[1]
    assert where.count("account_uuid = ") == 3  # the VM, its host, the host's cluster
    admin = Caller(account_uuid="a" * 32, is_admin=True)
    assert "account_uuid" not in sql(VmInstance, "host.name=h", caller=admin).split("WHERE")[1]


def test_a_plugin_join_is_an_exists_and_can_be_removed() -> None:
    add_join(VmInstance, "lastHost", Host, on=lambda vm, host: vm.last_host_uuid == host.uuid)
    try:
        assert joins_of(VmInstance)["lastHost"].target is Host
        assert "EXISTS (SELECT 1" in sql(VmInstance, "lastHost.name=h")
        with pytest.raises(ValueError):
            add_join(VmInstance, "host", Host, on=lambda vm, host: vm.host_uuid == host.uuid)
    finally:
        remove_join(VmInstance, "lastHost")
    assert "lastHost" not in joins_of(VmInstance)


@pytest.mark.parametrize(("condition", "valid"), [
    ("cpuNum=1.5", ["an integer, e.g. 42"]),
    ("createDate>tomorrow", ["ISO-8601, e.g. 2024-05-01T12:00:00Z"]),
    ("cpuNum~=1", ["=", "!=", ">", ">=", "<", "<=", "?=", "!?="]),
])
def test_bad_values_and_operators_say_what_is_valid(condition, valid) -> None:
    with pytest.raises(InvalidArgument) as caught:
        sql(VmInstance, condition)
    assert caught.value.details["valid"] == valid


def test_metadata_describes_every_queryable_kind_and_every_join_target() -> None:
    meta = query_metadata(OPERATIONS)
    assert meta["operators"] == list(OPERATORS)
    kinds = meta["resources"]
    assert kinds["Zone"]["operation"] == "QueryZone" and kinds["Zone"]["path"] == "/v1/zones"
    assert kinds["VmInstance"]["path"] == "/v1/vm-instances"
    assert kinds["L2Network"]["joins"]["cluster"] == "Cluster"
    for kind in kinds.values():
        assert set(kind) == {"operation", "path", "fields", "joins"}
        assert all(target in kinds for target in kind["joins"].values())
