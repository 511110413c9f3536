"""The OpenAPI document clients generate code from, made to say what the API really does.

Litestar documents the success response and its own validation error; this module adds what
the rest of the stack does to every request, by rule, and what a handler declares with
:func:`documents`:

- every 4xx/5xx body is the contract's ``{"error", "detail"}`` (one shared ``Error`` schema),
  with ``Retry-After`` on 429 and 503;
- routes that need a session list 401 and the two ways to send one (security schemes); admin
  routes 403; routes with path parameters 404; every ``/api/`` route 429 (rate limit) and 503
  (request timeout, a dependency down); every route 413 (the edge refuses bodies over
  :data:`app.http.edge.MAX_BODY_BYTES` before routing);
- request bodies and non-HTTP handlers (``/api/events``) a handler describes itself in ``opt``.

The document is rebuilt on each ``GET /schema/openapi.json`` (rare), from the app's routes.
"""

from __future__ import annotations

import copy
import inspect
import typing
from collections.abc import Iterator
from typing import Any

from litestar import Litestar, Request
from litestar.handlers import BaseRouteHandler, HTTPRouteHandler
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin
from litestar.routes import ASGIRoute, HTTPRoute

from app.auth.bound import ForAdmin, ForUser

ERRORS_KEY = "openapi_errors"
BODY_KEY = "openapi_request_body"
OPERATION_KEY = "openapi_operation"

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "Every 4xx/5xx body: a stable machine-readable code and one sentence for a person.",
    "required": ["error", "detail"],
    "properties": {
        "error": {"type": "string", "description": "Stable code, e.g. not_found, rate_limited."},
        "detail": {"type": "string", "description": "What went wrong and what to do next."},
    },
}
STATUS_DESCRIPTIONS = {
    400: "Malformed request (bad JSON, a query parameter out of range).",
    401: "The session token is missing, invalid or expired.",
    403: "The admin role is needed.",
    404: "Nothing with that id belongs to you (someone else's and absent are the same answer).",
    409: "Conflict with the current state (an older baseVersion, a job not in the failed state).",
    413: "The request body is larger than this endpoint accepts.",
    422: "The request is well-formed but a field is invalid.",
    429: "Rate limited: retry after Retry-After seconds.",
    503: "Temporarily unavailable (request timeout, queue or dependency down): retry after Retry-After seconds.",
}
RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before retrying.", "schema": {"type": "string"}}}
SECURITY_SCHEMES = {
    "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
    "sessionCookie": {"type": "apiKey", "in": "cookie", "name": "session"},
}
SESSION: list[dict[str, list[str]]] = [{"bearer": []}, {"sessionCookie": []}]


def documents(
    *statuses: int, body: dict[str, Any] | None = None, operation: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A handler's ``opt``: the error statuses only it returns (beyond the rules above), the JSON
    schema of a body it reads itself, or (for an ASGI handler) its whole GET operation."""
    opt: dict[str, Any] = {ERRORS_KEY: tuple(statuses)}
    if body is not None:
        opt[BODY_KEY] = body
    if operation is not None:
        opt[OPERATION_KEY] = operation
    return opt


class ContractSchemaPlugin(JsonRenderPlugin):
    """``/schema/openapi.json`` as :func:`contract_schema` makes it."""

    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        return self.render_json(request, contract_schema(openapi_schema, request.app))


def openapi_config() -> OpenAPIConfig:
    """JSON only (``/schema``, ``/schema/openapi.json``): no HTML page that loads scripts from
    elsewhere, so every response can carry ``Content-Security-Policy: default-src 'none'``."""
    return OpenAPIConfig(title="Draftwire", version="0.1.0", path="/schema",
                         render_plugins=[ContractSchemaPlugin(path=["/openapi.json"])])


def contract_schema(generated: dict[str, Any], app: Litestar) -> dict[str, Any]:
    schema = copy.deepcopy(generated)
    components = schema.setdefault("components", {})
    components.setdefault("schemas", {})["Error"] = ERROR_SCHEMA
    components["securitySchemes"] = SECURITY_SCHEMES
    paths = schema.setdefault("paths", {})
    for path, method, handler in _operations(app):
        opt = handler.opt or {}
        operation = paths.get(path, {}).get(method)
        if operation is None:
            if OPERATION_KEY not in opt:
                continue  # not in the schema by choice (health, metrics, the /ws upgrade)
            operation = paths.setdefault(path, {})[method] = copy.deepcopy(opt[OPERATION_KEY])
        _complete(operation, path, handler, opt)
    return schema


def _operations(app: Litestar) -> Iterator[tuple[str, str, BaseRouteHandler]]:
    for route in app.routes:
        if isinstance(route, HTTPRoute):
            for handler in route.route_handlers:
                for method in handler.http_methods:
                    yield route.path_format, method.lower(), handler
        elif isinstance(route, ASGIRoute) and OPERATION_KEY in (route.route_handler.opt or {}):
            yield route.path_format, "get", route.route_handler


def _complete(operation: dict[str, Any], path: str, handler: BaseRouteHandler, opt: dict[str, Any]) -> None:
    params = _handler_params(handler)
    statuses = set(opt.get(ERRORS_KEY, ())) | {413}
    if path.startswith("/api/"):
        statuses |= {429, 503}
    if "user" in params or "admin" in params or OPERATION_KEY in opt:
        statuses.add(401)
        operation["security"] = SESSION
    if "admin" in params:
        statuses.add(403)
    if "{" in path:
        statuses.add(404)
    if any(p.get("in") == "query" for p in operation.get("parameters", [])):
        statuses.add(400)
    if BODY_KEY in opt:
        operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": opt[BODY_KEY]}}}
        statuses.add(400)
    responses = operation.setdefault("responses", {})
    for code in list(responses):
        if int(code) >= 400:
            responses[code] = _error_response(int(code))
    for code in statuses:
        responses[str(code)] = _error_response(code)


def _error_response(status: int) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": STATUS_DESCRIPTIONS.get(status, "Error"),
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }
    if status in (429, 503):
        response["headers"] = RETRY_AFTER
    return response


def _handler_params(handler: BaseRouteHandler) -> set[str]:
    """Parameter names, plus ``user`` / ``admin`` for a service bound to the caller (ForUser)."""
    if not isinstance(handler, HTTPRouteHandler):
        return set()
    names = set(inspect.signature(handler.fn).parameters)
    for hint in typing.get_type_hints(handler.fn, include_extras=True).values():
        text = repr(hint)
        if ForAdmin.__name__ in text:
            names.add("admin")
        elif ForUser.__name__ in text:
            names.add("user")
    return names
