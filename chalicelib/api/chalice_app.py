"""Chalice, made safe for a threaded server, and the one view every operation uses."""
from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

from chalice import Chalice, Response

from chalicelib.api.dispatch import HttpCall, dispatch
from chalicelib.api.operation import Operation
from chalicelib.runtime.base import Runtime


class AerieChalice(Chalice):
    """Chalice keeps the current request on the app object. Lambda runs one request per
    process, but the embedded server runs many at once, so keep it per thread."""

    _local = threading.local()

    @property
    def current_request(self):  # type: ignore[override]
        return getattr(self._local, "request", None)

    @current_request.setter
    def current_request(self, value) -> None:
        self._local.request = value

    @property
    def lambda_context(self):  # type: ignore[override]
        return getattr(self._local, "context", None)

    @lambda_context.setter
    def lambda_context(self, value) -> None:
        self._local.context = value


def _query(request) -> dict[str, list[str]]:
    params = request.query_params
    if not params:
        return {}
    return {name: list(params.getlist(name)) for name in params}


# Bodies are JSON whatever the client labels them: plain `curl -d` says form-urlencoded.
BODY_CONTENT_TYPES = ["application/json", "application/x-www-form-urlencoded", "text/plain"]


def register_operations(app: AerieChalice, operations: list[Operation],
                        runtime: Callable[[], Runtime]) -> None:
    """One Chalice route per operation; each view hands the call to the dispatcher."""
    for op in operations:
        app.route(op.path, methods=[op.method], name=op.name,
                  content_types=BODY_CONTENT_TYPES)(_view(app, op, runtime))


def _view(app: AerieChalice, op: Operation, runtime: Callable[[], Runtime]):
    def view(**path_params: Any) -> Response:
        request = app.current_request
        call = HttpCall(
            headers={k.lower(): v for k, v in request.headers.items()},
            path_params=path_params, query_params=_query(request), body=request.raw_body,
        )
        reply = dispatch(runtime(), op, call)
        return Response(body=json.dumps(reply.body), status_code=reply.status,
                        headers={"Content-Type": "application/json", **reply.headers})

    view.__name__ = op.name
    return view
