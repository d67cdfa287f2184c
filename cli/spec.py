"""The API's operations as the client sees them, read from the server's OpenAPI document.

Nothing here is written per command: every ``operationId`` of the document is an operation
the CLI can call, with its path parameters, query parameters and request-body schema."""
from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any

# What a Query<Resource> call takes besides conditions (ZStack's query options).
QUERY_OPTIONS = ("limit", "start", "count", "replyWithCount", "sort", "fields")


@dataclass(frozen=True)
class Parameter:
    name: str
    location: str  # path | query | body
    required: bool
    schema: dict[str, Any] = field(default_factory=dict)
    description: str = ""


@dataclass(frozen=True)
class Operation:
    name: str
    method: str
    path: str
    summary: str = ""
    parameters: tuple[Parameter, ...] = ()
    has_body: bool = False
    resource: str | None = None
    asynchronous: bool = False

    @property
    def is_query(self) -> bool:
        """A Query<Resource> listing: its other pairs are conditions."""
        return self.method == "GET" and self.name.startswith("Query")

    def in_(self, location: str) -> list[Parameter]:
        return [p for p in self.parameters if p.location == location]

    def parameter(self, name: str) -> Parameter | None:
        return next((p for p in self.parameters if p.name == name), None)

    @property
    def option_names(self) -> list[str]:
        """Named pairs a Query operation takes (the rest are conditions)."""
        names = [p.name for p in self.in_("query") if p.name != "q"]
        return names + [o for o in QUERY_OPTIONS if o not in names]

    @property
    def parameter_names(self) -> list[str]:
        if self.is_query:
            return [p.name for p in self.in_("path")] + self.option_names
        return [p.name for p in self.parameters]


class ApiSpec:
    """The operations of one OpenAPI document, by name."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        self.operations: dict[str, Operation] = {}
        for path, item in document.get("paths", {}).items():
            shared = item.get("parameters", [])
            for method, raw in item.items():
                if method not in ("get", "put", "post", "delete", "patch") or \
                        not isinstance(raw, dict) or "operationId" not in raw:
                    continue
                self.operations[raw["operationId"]] = self._operation(
                    path, method.upper(), raw, shared)

    def _operation(self, path: str, method: str, raw: dict[str, Any],
                   shared: list[dict[str, Any]]) -> Operation:
        params: list[Parameter] = []
        for param in [*shared, *raw.get("parameters", [])]:
            param = self.resolve(param)
            params.append(Parameter(param["name"], param.get("in", "query"),
                                    bool(param.get("required")) or param.get("in") == "path",
                                    self.resolve(param.get("schema", {})),
                                    param.get("description", "")))
        body = (raw.get("requestBody", {}).get("content", {})
                .get("application/json", {}).get("schema"))
        taken = {p.name for p in params}
        if body is not None:
            body = self.resolve(body)
            required = set(body.get("required", []))
            for name, schema in body.get("properties", {}).items():
                if name in taken:  # a path parameter repeated in the body
                    continue
                schema = self.resolve(schema)
                params.append(Parameter(name, "body", name in required, schema,
                                        schema.get("description", "")))
        return Operation(raw["operationId"], method, path, raw.get("summary", ""),
                         tuple(params), body is not None, raw.get("x-aerie-resource"),
                         bool(raw.get("x-aerie-async")))

    def resolve(self, node: Any) -> Any:
        """Follow a local ``$ref`` (``#/components/schemas/X``)."""
        seen = 0
        while isinstance(node, dict) and "$ref" in node and seen < 20:
            target: Any = self.document
            for part in node["$ref"].lstrip("#/").split("/"):
                target = target.get(part, {}) if isinstance(target, dict) else {}
            node, seen = target, seen + 1
        return node

    def inventory_fields(self, resource: str) -> list[str]:
        """The fields of ``<Resource>Inventory``: what a query can name when the server has
        no query metadata to offer."""
        schema = self.document.get("components", {}).get("schemas", {}).get(
            f"{resource}Inventory", {})
        return list(self.resolve(schema).get("properties", {}))

    def close_names(self, name: str, limit: int = 5) -> list[str]:
        return close_matches(name, list(self.operations), limit)


def close_matches(name: str, candidates: list[str], limit: int = 5) -> list[str]:
    """Names like ``name``: the same case-insensitively, a near spelling, or containing it."""
    lowered: dict[str, str] = {}
    for candidate in candidates:
        lowered.setdefault(candidate.lower(), candidate)
    key = name.lower()
    found = [lowered[key]] if key in lowered else []
    found += [lowered[m] for m in difflib.get_close_matches(key, list(lowered), n=limit,
                                                            cutoff=0.6)]
    if len(key) > 2:
        found += [c for c in candidates if key in c.lower()]
    return list(dict.fromkeys(found))[:limit]
