"""What the query API can be asked: every queryable kind's fields and joins."""
from __future__ import annotations

from chalicelib.api.operation import Operation
from chalicelib.context import Context
from chalicelib.query import query_metadata


def _metadata(ctx: Context, request: None) -> dict:
    from chalicelib.api.registry import OPERATIONS

    return query_metadata(OPERATIONS)


OPERATIONS = [
    Operation("GetQueryMetadata", "GET", "/v1/query-metadata", None, _metadata,
              "Every queryable resource: its Query operation and path, its fields with their "
              "types and its joins; the operators and the tag fields", tags=("meta",)),
]
