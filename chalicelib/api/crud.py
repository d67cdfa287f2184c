"""The operations every resource kind shares, built from its model: Get, Query, Update,
Delete and, for kinds with a state, Change<Kind>State."""
from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field, field_validator

from chalicelib import resources
from chalicelib.api.operation import Operation, Runner
from chalicelib.api.request import ApiRequest, Description, Name, Uuid
from chalicelib.db.base import Base
from chalicelib.identity.ownership import get_visible
from chalicelib.query import QuerySpec, query


class UuidRequest(ApiRequest):
    uuid: Uuid


class ListRequest(ApiRequest):
    model_config = ConfigDict(strict=False)  # query strings carry numbers as text

    limit: int = Field(1000, ge=0, le=100_000, description="Most results to return")
    start: int = Field(0, ge=0, le=2**62, description="Results to skip")


class QueryRequest(ListRequest):
    q: list[str] = Field(
        default_factory=list,
        description="Conditions, ANDed: <field><op><value> with op one of = != > >= < <= "
                    "?= (in, comma-separated) !?= ~= (like: % and _) !~=; field=null and "
                    "field!=null; the field may be a join path (cluster.name=c1, "
                    "vmInstance.vmNics.ip=10.0.0.5) or __systemTag__ / __userTag__. "
                    "GET /v1/query-metadata lists the fields and joins.")
    count: bool = Field(False, description="Only the number of matches: {\"total\": n}")
    reply_with_count: bool = Field(False, description="The total along with the page")
    sort: str | None = Field(None, max_length=256,
                             description="+field or -field (own fields of the resource)")
    projection: str | None = Field(None, alias="fields", max_length=4096,
                                   description="Comma-separated fields to return (uuid always)")

    @field_validator("q", mode="before")
    @classmethod
    def _one_or_many(cls, value: object) -> object:
        return [value] if isinstance(value, str) else value

    def spec(self) -> QuerySpec:
        fields = None
        if self.projection is not None:
            fields = tuple(f.strip() for f in self.projection.split(",") if f.strip())
        return QuerySpec(conditions=tuple(self.q), limit=self.limit, start=self.start,
                         count=self.count, reply_with_count=self.reply_with_count,
                         sort=self.sort, fields=fields)


QUERY_PARAMS = ("q", "limit", "start", "count", "replyWithCount", "sort", "fields")


class UpdateRequest(UuidRequest):
    name: Name | None = None
    description: Description | None = None


class DeleteRequest(UuidRequest):
    model_config = ConfigDict(strict=False)

    delete_mode: Literal["Permissive", "Enforcing"] = Field(
        "Permissive",
        description="Permissive refuses (409) while dependents exist; Enforcing deletes them too",
    )


class ChangeStateRequest(UuidRequest):
    state_event: Literal["enable", "disable"]


def resource_operations(
    model: type[Base], path: str, *, admin_only: bool = False, has_state: bool = False,
    update_request: type[UpdateRequest] = UpdateRequest, update: Runner | None = None,
    deletable: bool = True, tag: str, sync_kind: str | None = None,
) -> list[Operation]:
    """``sync_kind``: the queue kind its changes wait in (``vm`` for VMs, whose lifecycle
    operations wait there too); by default the kind's own name."""
    kind = model.__resource__
    item = f"{path}/{{uuid}}"
    common = {"admin_only": admin_only, "resource": kind, "tags": (tag,)}
    serialized = {"sync_on": (sync_kind or kind[0].lower() + kind[1:], "uuid")}
    ops = [
        Operation(f"Get{kind}", "GET", item, UuidRequest,
                  lambda ctx, r: get_visible(ctx, model, r.uuid), f"Get one {kind}", **common),
        Operation(f"Query{kind}", "GET", path, QueryRequest,
                  lambda ctx, r: query(ctx, model, r.spec()),
                  f"Query {kind} resources by any field, through any join",
                  returns_list=True, query_params=QUERY_PARAMS, **common),
        Operation(f"Update{kind}", "PUT", item, update_request,
                  update or (lambda ctx, r: resources.update_resource(ctx, model, r.uuid,
                                                                      **r.fields("uuid"))),
                  f"Change a {kind}'s name or description", asynchronous=True, **common,
                  **serialized),
    ]
    if deletable:
        ops.append(Operation(
            f"Delete{kind}", "DELETE", item, DeleteRequest,
            lambda ctx, r: resources.delete_resource(
                ctx, model, r.uuid, enforcing=r.delete_mode == "Enforcing"),
            f"Delete a {kind}", asynchronous=True, query_params=("deleteMode",),
            **{**common, "resource": None}, **serialized,
        ))
    if has_state:
        ops.append(Operation(
            f"Change{kind}State", "PUT", f"{item}/actions/change-state", ChangeStateRequest,
            lambda ctx, r: resources.change_state(ctx, model, r.uuid, r.state_event),
            f"Enable or disable a {kind}", asynchronous=True, **common, **serialized,
        ))
    return ops


def attachment_operations(
    attach_name: str, detach_name: str, path: str, request: type[ApiRequest],
    attach: Runner, detach: Runner, *, what: str, resource: str, tag: str,
) -> list[Operation]:
    """POST attaches and DELETE detaches, on the same path (ZStack's shape)."""
    common = {"asynchronous": True, "admin_only": True, "resource": resource, "tags": (tag,)}
    return [Operation(attach_name, "POST", path, request, attach, f"Attach {what}", **common),
            Operation(detach_name, "DELETE", path, request, detach, f"Detach {what}", **common)]
