"""An API operation: its ZStack-style name, its HTTP route, its schema and what it runs."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from chalicelib.api.request import ApiRequest, CreateRequest
from chalicelib.context import Context
from chalicelib.db.base import Base
from chalicelib.flows.outcome import FlowEnd
from chalicelib.tags import apply_tags

Runner = Callable[[Context, Any], Any]


@dataclass(frozen=True)
class FlowBinding:
    """An operation whose work is a flow (``statemachines/chains/<chain>.json``).

    ``prepare`` runs in the transaction that marks the job Running (so a job cut off before
    it committed is run again, not interrupted): it checks the request against the
    resource as it is now and puts the resource into the state it shows while the flow runs;
    it returns the flow's context. The flow then runs step by step (its own transactions).
    ``settle`` runs in the job's last transaction with how the flow ended (a ``FlowEnd``:
    succeeded, rolled back, or rolled back with failures) and its context (the final one, or
    the one it started with if it failed): it puts the resource into its final state and
    returns the job's result.
    """

    chain: str
    prepare: Callable[[Context, Any], dict[str, Any]]
    settle: Callable[[Context, dict[str, Any], FlowEnd], Any]


@dataclass(frozen=True)
class Operation:
    name: str  # CreateZone: unique, the OpenAPI operationId and the CLI command
    method: str
    path: str  # /v1/zones/{uuid}: path parameters are request fields too
    request: type[ApiRequest] | None
    run: Runner
    summary: str
    # Asynchronous operations answer 202 with a job; the work runs on the job runtime.
    asynchronous: bool = False
    # Checks that must pass before a job is accepted (404/409 now, not in the job). Without
    # it, ``run`` itself is tried and rolled back: right for operations that only touch the DB.
    validate: Runner | None = None
    admin_only: bool = False
    # "session": a user's bearer token; "agent": the token of the host named by {hostUuid};
    # "none": anyone (logging in, the API document).
    authentication: str = "session"
    # False: run outside the call's transaction (ctx.session is None; ctx.database opens
    # short ones), for calls that wait, like an agent's long-poll.
    transactional: bool = True
    resource: str | None = None  # the resource kind its result is an inventory of
    returns_list: bool = False
    query_params: tuple[str, ...] = ()
    tags: tuple[str, ...] = field(default_factory=tuple)
    # The operation queue an asynchronous call waits in: ("zone", "uuid") serializes on
    # zone:<the request's uuid>. Without it the call has a queue of its own (job:<job uuid>).
    sync_on: tuple[str, str] | None = None
    # Undoes what an interrupted run (the process died mid-way) may have left behind.
    on_interrupted: Runner | None = None
    flow: FlowBinding | None = None

    def signature(self, request: ApiRequest | None, job_uuid: str) -> str:
        if self.sync_on is None or request is None:
            return f"job:{job_uuid}"
        kind, field_name = self.sync_on
        return f"{kind}:{getattr(request, field_name)}"

    @property
    def path_params(self) -> list[str]:
        return [part[1:-1] for part in self.path.split("/") if part.startswith("{")]

    def execute(self, ctx: Context, request: ApiRequest | None) -> Any:
        """Run the operation; a created resource gets the tags its request carries."""
        result = self.run(ctx, request)
        if isinstance(request, CreateRequest) and isinstance(result, Base):
            apply_tags(ctx, result, request.system_tags, request.user_tags)
        return result
