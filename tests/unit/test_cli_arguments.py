"""`aerie <Operation> key=value …` → one HTTP request, from the OpenAPI document alone."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from cli.arguments import OPERATORS, UsageError, build_call, split_pair
from cli.commands import parse_options
from cli.spec import ApiSpec

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def ops():
    return ApiSpec(json.loads((ROOT / "openapi.json").read_text())).operations


def test_every_operation_of_the_document_is_a_command(ops):
    document = json.loads((ROOT / "openapi.json").read_text())
    ids = {o["operationId"] for item in document["paths"].values() for o in item.values()
           if isinstance(o, dict) and "operationId" in o}
    assert set(ops) == ids
    assert ops["StartVmInstance"].method == "PUT"
    assert ops["StartVmInstance"].path == "/v1/vm-instances/{uuid}/actions/start"


@pytest.mark.parametrize(("token", "key", "operator", "value"), [
    ("name=z1", "name", "=", "z1"),
    ("name!=z1", "name", "!=", "z1"),
    ("cpuNum>2", "cpuNum", ">", "2"),
    ("cpuNum>=2", "cpuNum", ">=", "2"),
    ("cpuNum<2", "cpuNum", "<", "2"),
    ("cpuNum<=2", "cpuNum", "<=", "2"),
    ("state?=Running,Stopped", "state", "?=", "Running,Stopped"),
    ("state!?=Running,Stopped", "state", "!?=", "Running,Stopped"),
    ("name~=z%", "name", "~=", "z%"),
    ("name!~=z%", "name", "!~=", "z%"),
    ("vmInstance.vmNics.ip=10.0.0.1", "vmInstance.vmNics.ip", "=", "10.0.0.1"),
    ("description=a=b>c", "description", "=", "a=b>c"),
    ("name=", "name", "=", ""),
])
def test_the_operator_is_read_from_the_token(token, key, operator, value):
    pair = split_pair(token)
    assert (pair.key, pair.operator, pair.value) == (key, operator, value)
    assert operator in OPERATORS


@pytest.mark.parametrize("token", ["name", "=z1", "name:z1"])
def test_a_token_without_an_operator_is_a_usage_error(token):
    with pytest.raises(UsageError):
        split_pair(token)


def test_query_conditions_become_q_and_options_stay_options(ops):
    call = build_call(ops["QueryZone"], ["name~=z%", "cluster.name=c1", "limit=5",
                                         "fields=uuid,name", "replyWithCount=true"])
    assert (call.method, call.path, call.body) == ("GET", "/v1/zones", None)
    assert call.params == [("q", "name~=z%"), ("q", "cluster.name=c1"), ("limit", "5"),
                           ("fields", "uuid,name"), ("replyWithCount", "true")]


def test_an_option_takes_only_equals(ops):
    with pytest.raises(UsageError, match="takes '='"):
        build_call(ops["QueryZone"], ["limit>5"])


def test_path_parameters_fill_the_path(ops):
    call = build_call(ops["StartVmInstance"], ["uuid=0123456789abcdef0123456789abcdef"])
    assert call.method == "PUT"
    assert call.path == "/v1/vm-instances/0123456789abcdef0123456789abcdef/actions/start"
    assert call.body == {}
    attach = build_call(ops["AttachL2NetworkToCluster"], ["l2NetworkUuid=a/b", "clusterUuid=c"])
    assert attach.path == "/v1/l2-networks/a%2Fb/clusters/c"


def test_get_pairs_other_than_path_parameters_are_query_parameters(ops):
    call = build_call(ops["DeleteZone"], ["uuid=abc", "deleteMode=Enforcing"])
    assert (call.method, call.path, call.params, call.body) == (
        "DELETE", "/v1/zones/abc", [("deleteMode", "Enforcing")], None)


def test_the_body_is_typed_by_the_schema(ops):
    call = build_call(ops["CreateVmInstance"], [
        "name=vm1", "imageUuid=i", "instanceOfferingUuid=o", "l3NetworkUuids=a,b",
        "systemTags=hostname::vm1", "dataDiskOfferingUuids="])
    assert call.body == {"name": "vm1", "imageUuid": "i", "instanceOfferingUuid": "o",
                         "l3NetworkUuids": ["a", "b"], "systemTags": ["hostname::vm1"],
                         "dataDiskOfferingUuids": []}
    host = build_call(ops["AddKvmHost"], ["clusterUuid=c", "managementIp=10.0.0.2", "name=h",
                                          "sshPort=2222", "deployAgent=false"])
    assert host.body["sshPort"] == 2222 and host.body["deployAgent"] is False
    as_json = build_call(ops["CreateVmInstance"], [
        "name=vm1", "imageUuid=i", "instanceOfferingUuid=o", 'l3NetworkUuids=["a"]'])
    assert as_json.body["l3NetworkUuids"] == ["a"]


def test_a_union_of_scalars_takes_the_type_the_text_reads_as(ops):
    op = ops["UpdateGlobalConfig"]
    assert build_call(op, ["category=vm", "name=syncLevel", "value=3"]).body == {"value": 3}
    assert build_call(op, ["category=c", "name=n", "value=true"]).body == {"value": True}
    assert build_call(op, ["category=c", "name=n", "value=abc"]).body == {"value": "abc"}


def test_a_value_of_the_wrong_type_is_a_usage_error(ops):
    with pytest.raises(UsageError, match="sshPort=22x: expects an integer"):
        build_call(ops["AddKvmHost"], ["clusterUuid=c", "managementIp=m", "name=h",
                                       "sshPort=22x"])
    with pytest.raises(UsageError, match="expects true or false"):
        build_call(ops["AddKvmHost"], ["clusterUuid=c", "managementIp=m", "name=h",
                                       "deployAgent=maybe"])


def test_an_unknown_parameter_names_the_valid_ones(ops):
    with pytest.raises(UsageError) as caught:
        build_call(ops["CreateZone"], ["nme=z1"])
    message = str(caught.value)
    assert "no parameter 'nme'" in message and "did you mean name" in message
    assert "valid parameters: systemTags, userTags, name (required), description" in message


def test_a_missing_required_parameter_is_named(ops):
    with pytest.raises(UsageError, match=r"CreateCluster needs (name=…, zoneUuid=…|zoneUuid=…, "
                                         r"name=…)"):
        build_call(ops["CreateCluster"], [])
    with pytest.raises(UsageError, match=r"GetZone needs uuid=…"):
        build_call(ops["GetZone"], [])


def test_options_may_come_anywhere():
    options = parse_options(["QueryZone", "--json", "name=z1", "--url", "http://h:1"])
    assert options.words == ["QueryZone", "name=z1"]
    assert options.json and options.url == "http://h:1"
    assert parse_options(["login", "--password=a=b"]).password == "a=b"
    with pytest.raises(UsageError, match="unknown option --jsn"):
        parse_options(["QueryZone", "--jsn"])
