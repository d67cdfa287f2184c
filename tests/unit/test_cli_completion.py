"""The shell's completer, called directly with a metadata dict and the OpenAPI operations."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from prompt_toolkit.completion import CompleteEvent
from prompt_toolkit.document import Document

from cli.completion import AerieCompleter
from cli.spec import ApiSpec

ROOT = Path(__file__).resolve().parents[2]
OPERATORS = ["=", "!=", ">", ">=", "<", "<=", "?=", "!?=", "~=", "!~="]
METADATA = {
    "resources": {
        "Zone": {"operation": "QueryZone", "path": "/v1/zones",
                 "fields": {"uuid": "string", "name": "string", "state": "string",
                            "createDate": "datetime"},
                 "joins": {"cluster": "Cluster", "clusters": "Cluster",
                           "vmInstance": "VmInstance"}},
        "Cluster": {"operation": "QueryCluster", "path": "/v1/clusters",
                    "fields": {"uuid": "string", "name": "string", "zoneUuid": "string"},
                    "joins": {"zone": "Zone"}},
        "VmInstance": {"operation": "QueryVmInstance", "path": "/v1/vm-instances",
                       "fields": {"uuid": "string", "name": "string", "cpuNum": "integer",
                                  "memorySize": "integer"},
                       "joins": {"vmNics": "VmNic", "zone": "Zone"}},
        "VmNic": {"operation": "QueryVmNic", "path": "/v1/vm-nics",
                  "fields": {"uuid": "string", "ip": "string", "mac": "string"},
                  "joins": {"vmInstance": "VmInstance"}},
    },
    "operators": OPERATORS,
    "tagFields": ["__systemTag__", "__userTag__"],
}


@pytest.fixture(scope="module")
def completer():
    spec = ApiSpec(json.loads((ROOT / "openapi.json").read_text()))
    return AerieCompleter(spec, METADATA)


def complete(completer, text):
    event = CompleteEvent(completion_requested=True)
    found = list(completer.get_completions(Document(text), event))
    for completion in found:  # every completion replaces exactly the word being typed
        word = "" if text[-1:].isspace() or not text else text.split()[-1]
        assert completion.start_position == -len(word)
    return [c.text for c in found]


def test_operation_names(completer):
    assert complete(completer, "QueryZ") == ["QueryZone"]
    assert complete(completer, "StartVm") == ["StartVmInstance"]
    assert {"CreateZone", "CreateCluster", "CreateVmInstance"} <= set(complete(completer, "Cre"))
    # a part of the name finds it too, after the names that start with it
    assert "QueryVmInstance" in complete(completer, "VmInst")
    assert "logout" in complete(completer, "log")


def test_parameter_names_of_an_operation(completer):
    assert set(complete(completer, "CreateZone ")) == {
        "name=", "description=", "systemTags=", "userTags="}
    assert complete(completer, "CreateZone na") == ["name="]
    assert "name=" not in complete(completer, "CreateZone name=z1 ")  # already given
    assert complete(completer, "StartVmInstance ") == ["uuid="]
    assert complete(completer, "ChangeZoneState uuid=x stateEvent=") == [
        "stateEvent=enable", "stateEvent=disable"]
    assert complete(completer, "CreateZone --j") == ["--json"]


def test_fields_joins_options_and_tags_after_a_query_operation(completer):
    offered = complete(completer, "QueryZone ")
    assert {"uuid", "name", "state", "createDate"} <= set(offered)
    assert {"cluster.", "clusters.", "vmInstance."} <= set(offered)
    assert {"limit=", "start=", "count=", "replyWithCount=", "sort=", "fields="} <= set(offered)
    assert {"__systemTag__", "__userTag__"} <= set(offered)
    assert complete(completer, "QueryZone cre") == ["createDate"]
    assert complete(completer, "QueryZone name=z1 st") == ["start=", "state"]


def test_operators_after_a_field(completer):
    assert complete(completer, "QueryZone name") == ["name" + op for op in OPERATORS]
    assert complete(completer, "QueryZone name!") == ["name!=", "name!?=", "name!~="]
    assert complete(completer, "QueryZone name>") == ["name>="]
    assert complete(completer, "QueryZone vmInstance.cpuNum") == [
        "vmInstance.cpuNum" + op for op in OPERATORS]
    assert complete(completer, "QueryZone nosuchfield!") == []


def test_a_join_hop_offers_the_joined_resources_fields_and_joins(completer):
    assert set(complete(completer, "QueryZone vmInstance.")) == {
        "vmInstance.uuid", "vmInstance.name", "vmInstance.cpuNum", "vmInstance.memorySize",
        "vmInstance.vmNics.", "vmInstance.zone."}
    assert complete(completer, "QueryZone vmInstance.mem") == ["vmInstance.memorySize"]


def test_two_hops_deep(completer):
    assert set(complete(completer, "QueryZone vmInstance.vmNics.")) == {
        "vmInstance.vmNics.uuid", "vmInstance.vmNics.ip", "vmInstance.vmNics.mac",
        "vmInstance.vmNics.vmInstance."}
    assert complete(completer, "QueryZone vmInstance.vmNics.ip~") == ["vmInstance.vmNics.ip~="]
    assert complete(completer, "QueryZone nosuch.") == []


def test_fields_option_completes_field_names(completer):
    assert complete(completer, "QueryZone fields=uuid,na") == ["fields=uuid,name"]


def test_without_metadata_a_query_completes_its_inventory_fields(completer):
    bare = AerieCompleter(completer.spec, None)
    offered = complete(bare, "QueryZone ")
    assert {"uuid", "name", "state"} <= set(offered)
    assert not [o for o in offered if o.endswith(".")]
    assert complete(bare, "QueryZone name~") == ["name~="]
