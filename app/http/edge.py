"""Cross-cutting HTTP behaviour in one ASGI middleware: the body size limit, request timeout, the
per-client rate limit of all routes that have no limit of their own, and the ``request`` access
log line."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from litestar.connection import ASGIConnection
from litestar.enums import ScopeType
from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from app.auth.guards import principal_of
from app.config import Settings
from app.errors import ApiError, error_body
from app.ratelimit import Limit, RateLimiter
from observability.logging import get_logger

log = get_logger("app.http")

# Probes and scrapes are neither limited nor logged per request: they would drown the signal.
QUIET_PATHS = frozenset({"/healthz", "/readyz", "/health", "/metrics"})
# Routes with a limit of their own (per user) are not counted against the per-client limit.
OWN_LIMIT = frozenset({("POST", "/api/autosave")})
MAX_BODY_BYTES = 1_100_000
"""No request body may be larger (the autosave payload limit, 512,000 bytes, twice over for
escapes, plus its title): a ``Content-Length`` above it is 413 before the handler runs, and
Litestar stops reading a chunked body there too. Routes may refuse smaller bodies themselves."""
# Long-lived streams (SSE) are not requests with a deadline: no API_REQUEST_TIMEOUT for them.
STREAMING = frozenset({"/api/events"})


def _json_response(status: int, body: dict[str, str], headers: dict[str, str]) -> list[Message]:
    import json

    payload = json.dumps(body).encode()
    raw_headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    raw_headers += [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    return [
        {"type": "http.response.start", "status": status, "headers": raw_headers},
        {"type": "http.response.body", "body": payload},
    ]


class EdgeMiddleware(ASGIMiddleware):
    scopes = (ScopeType.HTTP,)

    def __init__(self, settings: Settings, limiter: RateLimiter) -> None:
        self.settings = settings
        self.limiter = limiter
        self.api_limit = Limit("api", settings.rate_limit_requests, settings.rate_limit_window_seconds)

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        settings = self.settings
        route = scope.get("path_template") or scope["path"]
        method = scope.get("method", "GET")
        start = time.perf_counter()
        status = {"code": 500, "started": False}

        async def tracked_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                status["started"] = True
            await send(message)

        quiet = route in QUIET_PATHS
        try:
            _check_length(scope)
            if not quiet and (method, route) not in OWN_LIMIT and route.startswith("/api/"):
                principal = principal_of(ASGIConnection(scope), settings.jwt_verify_keys)
                client = f"u:{principal.user_id}" if principal else f"ip:{_client_ip(scope)}"
                await self.limiter.check(self.api_limit, client, route)
            timeout = None if route in STREAMING else (settings.api_request_timeout or None)
            async with asyncio.timeout(timeout):
                await next_app(scope, receive, tracked_send)
        except ApiError as exc:
            for message in _json_response(exc.status, error_body(exc.code, exc.detail), exc.headers):
                await tracked_send(message)
        except TimeoutError:
            if not status["started"]:
                body = error_body("request_timeout", "The request took too long and was stopped; retry shortly.")
                for message in _json_response(503, body, {"Retry-After": "5"}):
                    await tracked_send(message)
        finally:
            if not quiet:
                log.info(
                    "request",
                    method=method,
                    route=route,
                    status=status["code"],
                    latency_ms=round((time.perf_counter() - start) * 1000, 2),
                )


def _check_length(scope: Scope) -> None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            if not value.isdigit() or int(value) > MAX_BODY_BYTES:
                raise ApiError(413, "payload_too_large", f"Request bodies are limited to {MAX_BODY_BYTES} bytes.")
            return


def _client_ip(scope: Scope) -> str:
    client: Any = scope.get("client")
    return str(client[0]) if client else "unknown"
