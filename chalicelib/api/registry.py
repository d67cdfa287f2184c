"""Every API operation, by name."""
from __future__ import annotations

import json
import sys
from functools import cache

from chalicelib.api.openapi import openapi_document
from chalicelib.api.operation import Operation
from chalicelib.api.routes import (
    compute,
    globalconfig,
    hosts,
    identity,
    meta,
    metrics,
    network,
    query,
    storage,
    vms,
)

OPERATIONS: list[Operation] = [
    *meta.OPERATIONS, *metrics.OPERATIONS, *identity.OPERATIONS, *globalconfig.OPERATIONS,
    *compute.OPERATIONS, *hosts.OPERATIONS, *storage.OPERATIONS, *network.OPERATIONS,
    *vms.OPERATIONS, *query.OPERATIONS,
]

BY_NAME: dict[str, Operation] = {op.name: op for op in OPERATIONS}
if len(BY_NAME) != len(OPERATIONS):
    raise RuntimeError("two operations share a name")
if len({(op.method, op.path) for op in OPERATIONS}) != len(OPERATIONS):
    raise RuntimeError("two operations share a method and path")


def operation(name: str) -> Operation:
    return BY_NAME[name]


@cache
def openapi() -> dict:
    return openapi_document(OPERATIONS)


def openapi_text() -> str:
    return json.dumps(openapi(), indent=1, sort_keys=False) + "\n"


if __name__ == "__main__":
    if sys.argv[1:2] != ["--write"] or len(sys.argv) != 3:
        sys.exit("usage: python -m chalicelib.api.registry --write openapi.json")
    with open(sys.argv[2], "w") as out:
        out.write(openapi_text())
