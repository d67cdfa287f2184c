"""A WSGI application that runs the Chalice app's routes exactly as API Gateway and Lambda
would: each request becomes an API Gateway event handled by the same handlers."""
from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterable
from http import HTTPStatus
from urllib.parse import parse_qs

from chalice.config import Config
from chalice.local import LocalGateway, LocalGatewayException, MatchResult, RouteMatcher

from chalicelib.api.chalice_app import AerieChalice

MAX_BODY = 1024 * 1024


def _json(status: int, code: str, message: str) -> tuple[int, dict[str, str], bytes]:
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    return status, {"Content-Type": "application/json"}, body


class IndexedRouteMatcher(RouteMatcher):
    """Chalice's matcher, same answers (a literal segment wins over a capture), walked as a
    tree of path segments instead of trying every route on every request."""

    _CAPTURE, _ROUTE = "{}", "{route}"

    def __init__(self, route_urls: list[str]) -> None:
        super().__init__(route_urls)
        self._tree: dict = {}
        for url in self.route_urls:
            node = self._tree
            for part in url.split("/"):
                node = node.setdefault(self._CAPTURE if part.startswith("{") else part, {})
            node[self._ROUTE] = url

    def _walk(self, node: dict, parts: list[str], at: int, values: list[str]) -> str | None:
        if at == len(parts):
            return node.get(self._ROUTE)
        head = parts[at]
        literal = node.get(head) if not head.startswith("{") else None
        if literal is not None:
            found = self._walk(literal, parts, at + 1, values)
            if found:
                return found
        capture = node.get(self._CAPTURE)
        if capture is not None and head:
            values.append(head)
            found = self._walk(capture, parts, at + 1, values)
            if found:
                return found
            values.pop()
        return None

    def match_route(self, url: str) -> MatchResult:
        path, _, query = url.partition("?")
        if path != "/" and path.endswith("/"):
            path = path[:-1]
        values: list[str] = []
        route = self._walk(self._tree, path.split("/"), 0, values)
        if route is None:
            raise ValueError(f"No matching route found for: {url}")
        names = [part[1:-1] for part in route.split("/") if part.startswith("{")]
        return MatchResult(route, dict(zip(names, values, strict=True)),
                           parse_qs(query, keep_blank_values=True))


class ChaliceWsgiApp:
    def __init__(self, app: AerieChalice) -> None:
        self._gateway = LocalGateway(app, Config())
        self._routes = IndexedRouteMatcher(list(app.routes))
        self._gateway.event_converter._route_matcher = self._routes

    def _handle(self, environ: dict) -> tuple[int, dict[str, str], bytes]:
        method = environ["REQUEST_METHOD"]
        path = environ.get("PATH_INFO", "") or "/"
        try:
            self._routes.match_route(path)
        except ValueError:
            return _json(404, "NoSuchPath", f"no API at {path}; GET /v1/openapi.json lists them")
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return _json(400, "InvalidArgument", "Content-Length is not a number")
        if length > MAX_BODY:
            return _json(413, "BodyTooLarge", f"request bodies are limited to {MAX_BODY} bytes")
        body = environ["wsgi.input"].read(length) if length else b""
        headers = {key[5:].replace("_", "-").lower(): value
                   for key, value in environ.items() if key.startswith("HTTP_")}
        if environ.get("CONTENT_TYPE"):
            headers["content-type"] = environ["CONTENT_TYPE"]
        query = environ.get("QUERY_STRING")
        target = path.replace("%", "%25").replace("?", "%3F").replace("#", "%23")
        try:
            reply = self._gateway.handle_request(
                method, f"{target}?{query}" if query else target, headers, body)
        except LocalGatewayException as exc:
            return exc.CODE, dict(exc.headers), exc.body or b""
        payload = reply.get("body") or b""
        if reply.get("isBase64Encoded"):
            payload = base64.b64decode(payload)
        elif isinstance(payload, str):
            payload = payload.encode()
        reply_headers = dict(reply.get("headers") or {})
        for name, values in (reply.get("multiValueHeaders") or {}).items():
            reply_headers[name] = ", ".join(values)
        return reply["statusCode"], reply_headers, payload

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        status, headers, body = self._handle(environ)
        phrase = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else ""
        headers["Content-Length"] = str(len(body))
        start_response(f"{status} {phrase}", list(headers.items()))
        return [body]
