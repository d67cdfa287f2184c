"""The OpenAPI 3 document, generated from the operations and the very schemas that validate
requests, and from the ORM models for the inventories they return."""
from __future__ import annotations

import copy
from typing import Any

from sqlalchemy import BigInteger, Boolean, Float, Integer, inspect

from chalicelib.api.operation import Operation
from chalicelib.db.base import Base
from chalicelib.db.inventory import camel
from chalicelib.db.types import UtcDateTime

ERROR_STATUSES = {
    "400": "Invalid request: the error names the field",
    "401": "No valid session",
    "403": "Not allowed for this account",
    "404": "A named resource does not exist",
    "409": "Conflicts with the current state",
}


def _column_schema(column) -> dict[str, Any]:
    kind = column.type
    if isinstance(kind, Boolean):
        schema: dict[str, Any] = {"type": "boolean"}
    elif isinstance(kind, (Integer, BigInteger)):
        schema = {"type": "integer"}
    elif isinstance(kind, Float):
        schema = {"type": "number"}
    elif isinstance(kind, UtcDateTime):
        schema = {"type": "string", "format": "date-time"}
    else:
        schema = {"type": "string"}
    if column.nullable:
        schema = {**schema, "nullable": True}
    return schema


def inventory_schema(model: type[Base]) -> dict[str, Any]:
    properties = {}
    for attr in inspect(model).column_attrs:
        key = camel(attr.key)
        if key not in model.__hidden_fields__:
            properties[key] = _column_schema(attr.columns[0])
    return {"type": "object", "properties": properties, "additionalProperties": True}


def _models_by_kind() -> dict[str, type[Base]]:
    return {m.class_.__resource__: m.class_ for m in Base.registry.mappers
            if m.class_.__resource__}


def _request_parts(op: Operation) -> tuple[list[dict], dict | None, dict]:
    """Path and query parameters, the body schema, and any $defs the schema uses."""
    if op.request is None:
        return [], None, {}
    schema = op.request.model_json_schema(
        by_alias=True, ref_template="#/components/schemas/{model}")
    defs = schema.pop("$defs", {})
    properties = schema.get("properties", {})
    required = set(schema.get("required", []))
    params = []
    for name in op.path_params:
        params.append({"name": name, "in": "path", "required": True,
                       "schema": properties.pop(name, {"type": "string"})})
    for name in op.query_params:
        params.append({"name": name, "in": "query", "required": name in required,
                       "schema": properties.pop(name, {"type": "string"})})
    required -= {p["name"] for p in params}
    body = None
    if op.method in ("POST", "PUT"):
        body = {"type": "object", "title": schema.get("title"), "properties": properties,
                "additionalProperties": False}
        if required:
            body["required"] = sorted(required)
    return params, body, defs


def _reply_schema(op: Operation, kinds: dict[str, type[Base]]) -> dict[str, Any]:
    if op.asynchronous:
        return {"$ref": "#/components/schemas/JobAccepted"}
    if op.resource in kinds:
        item = {"$ref": f"#/components/schemas/{op.resource}Inventory"}
        if op.returns_list:
            return {"type": "object", "properties": {"inventories": {"type": "array",
                                                                     "items": item}}}
        return {"type": "object", "properties": {"inventory": item}}
    return {"type": "object"}


def _operation_object(op: Operation, kinds: dict[str, type[Base]],
                      schemas: dict[str, Any]) -> dict[str, Any]:
    params, body, defs = _request_parts(op)
    schemas.update(copy.deepcopy(defs))
    status = "202" if op.asynchronous else "200"
    description = "Accepted: poll the job at `location`" if op.asynchronous else "OK"
    responses = {status: {"description": description,
                          "content": {"application/json": {"schema": _reply_schema(op, kinds)}}}}
    for code, text in ERROR_STATUSES.items():
        responses[code] = {"description": text, "content": {"application/json": {
            "schema": {"$ref": "#/components/schemas/Error"}}}}
    operation: dict[str, Any] = {
        "operationId": op.name, "summary": op.summary, "tags": list(op.tags),
        "parameters": params, "responses": responses,
        "x-aerie-async": op.asynchronous, "x-aerie-admin-only": op.admin_only,
    }
    if op.resource:
        operation["x-aerie-resource"] = op.resource
    if body is not None:
        operation["requestBody"] = {"required": bool(body.get("required")), "content": {
            "application/json": {"schema": body}}}
    if op.authentication == "none":
        operation["security"] = []
    elif op.authentication == "agent":
        operation["security"] = [{"agent": []}]
    return operation


def openapi_document(operations: list[Operation]) -> dict[str, Any]:
    kinds = _models_by_kind()
    schemas: dict[str, Any] = {
        f"{kind}Inventory": inventory_schema(model) for kind, model in sorted(kinds.items())
    }
    schemas["Error"] = {"type": "object", "required": ["error"], "properties": {"error": {
        "type": "object", "required": ["code", "message"], "properties": {
            "code": {"type": "string"}, "message": {"type": "string"}, "details": {}}}}}
    schemas["JobAccepted"] = {"type": "object", "required": ["jobUuid", "location"],
                              "properties": {"jobUuid": {"type": "string"},
                                             "location": {"type": "string"}}}
    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        paths.setdefault(op.path, {})[op.method.lower()] = _operation_object(op, kinds, schemas)
    return {
        "openapi": "3.0.3",
        "info": {"title": "Aerie", "version": "1",
                 "description": "IaaS control plane. Mutating calls return 202 and a job; "
                                "GET /v1/api-jobs/{uuid} tells how it went."},
        "paths": {path: paths[path] for path in sorted(paths)},
        "components": {
            "schemas": {name: schemas[name] for name in sorted(schemas)},
            "securitySchemes": {
                "session": {"type": "http", "scheme": "bearer"},
                "agent": {"type": "apiKey", "in": "header", "name": "Authorization",
                          "description": "Agent <the host's agent token>"},
            },
        },
        "security": [{"session": []}],
    }
