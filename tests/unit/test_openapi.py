"""The OpenAPI document is generated from the operations, checked in, and kept current."""
from pathlib import Path

from chalicelib.api.registry import OPERATIONS, openapi, openapi_text

ROOT = Path(__file__).resolve().parents[2]


def test_checked_in_document_is_current():
    checked_in = (ROOT / "openapi.json").read_text()
    assert checked_in == openapi_text(), "openapi.json is stale: run `make openapi`"


def test_every_operation_appears_once_with_its_name():
    document = openapi()
    ids = [op["operationId"] for path in document["paths"].values() for op in path.values()]
    assert sorted(ids) == sorted(op.name for op in OPERATIONS)
    assert len(ids) == len(set(ids))


def test_request_schemas_come_from_the_validating_models():
    create_zone = openapi()["paths"]["/v1/zones"]["post"]
    body = create_zone["requestBody"]["content"]["application/json"]["schema"]
    assert body["required"] == ["name"]
    assert body["properties"]["name"]["maxLength"] == 255
    assert body["additionalProperties"] is False
    assert "202" in create_zone["responses"] and create_zone["x-aerie-async"] is True


def test_path_parameters_are_declared():
    attach = openapi()["paths"]["/v1/l2-networks/{l2NetworkUuid}/clusters/{clusterUuid}"]["post"]
    names = {p["name"] for p in attach["parameters"] if p["in"] == "path"}
    assert names == {"l2NetworkUuid", "clusterUuid"}
    assert attach["operationId"] == "AttachL2NetworkToCluster"
