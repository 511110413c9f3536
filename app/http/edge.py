"""Everything every HTTP request goes through, in one ASGI layer: the server span, the
Prometheus request metrics, the request timeout, the per-client rate limit of all routes that
have no limit of their own, and the ``request`` access log line.

One layer instead of Litestar's OpenTelemetry and Prometheus plugin middlewares plus an edge
middleware of ours: each of those wrapped ``send`` and the request once more, and together they
were about a third of the API's Python time per request (docs/decisions/0005). The names stay
the plugins' own: ``http_requests_total``, ``http_request_duration_seconds``,
``http_requests_in_progress`` and ``http_requests_error_total`` with ``method``, ``path``
(the route template), ``status_code`` and ``app_name``; a SERVER span named
``"<METHOD> <route>"`` continuing the caller's W3C trace context, with the HTTP attributes of
the OpenTelemetry semantic conventions (never the query string: it may carry a token).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from contextvars import Token
from typing import Any

from litestar.connection import ASGIConnection
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, ReceiveMessage, Scope, Send
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.trace import SpanKind, Status, StatusCode
from prometheus_client import Counter, Gauge, Histogram

from app.auth.guards import principal_of
from app.config import Settings
from app.errors import ApiError, error_body
from app.http.raw import header
from app.ratelimit import Limit, RateLimiter
from observability import tracing
from observability.logging import get_logger
from observability.metrics import (
    HTTP_REQUEST_DURATION,
    HTTP_REQUEST_ERRORS,
    HTTP_REQUESTS,
    HTTP_REQUESTS_IN_PROGRESS,
    exemplar,
)

log = get_logger("app.http")

APP_NAME = "draftwire"
# Probes and scrapes are neither limited nor logged per request: they would drown the signal.
QUIET_PATHS = frozenset({"/healthz", "/readyz", "/health", "/metrics"})
# No span for scrapes and probes, nor for SSE streams (hours long; delivery makes its own spans).
UNTRACED = frozenset({"/metrics", "/healthz", "/readyz", "/api/events"})
UNMEASURED = frozenset({"/metrics"})
# Routes with a limit of their own (per user) are not counted against the per-client limit.
OWN_LIMIT = frozenset({("POST", "/api/autosave")})
MAX_BODY_BYTES = 1_100_000
"""No request body may be larger (the autosave payload limit, 512,000 bytes, twice over for
escapes, plus its title): a ``Content-Length`` above it is 413 before the handler runs, and
Litestar stops reading a chunked body there too. Routes may refuse smaller bodies themselves."""
# Long-lived streams (SSE) are not requests with a deadline: no API_REQUEST_TIMEOUT for them.
STREAMING = frozenset({"/api/events"})


def _json_response(status: int, body: dict[str, str], headers: dict[str, str]) -> list[Message]:
    """The two ASGI messages of a JSON error response."""
    payload = json.dumps(body).encode()
    raw_headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    raw_headers += [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    start: Message = {"type": "http.response.start", "status": status, "headers": raw_headers}
    return [start, {"type": "http.response.body", "body": payload, "more_body": False}]


class _Children:
    """Prometheus children per (method, route[, status]), resolved once: ``labels()`` per request
    was a measurable share of its cost. Keys are bounded (route templates, methods, statuses)."""

    def __init__(self) -> None:
        self.done: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}
        self.errors: dict[tuple[str, str, int], Counter] = {}
        self.running: dict[tuple[str, str], Gauge] = {}

    def finished(self, method: str, route: str, status: int) -> tuple[Counter, Histogram]:
        key = (method, route, status)
        found = self.done.get(key)
        if found is None:
            labels = (method, route, str(status), APP_NAME)
            found = self.done[key] = (HTTP_REQUESTS.labels(*labels), HTTP_REQUEST_DURATION.labels(*labels))
        return found

    def error(self, method: str, route: str, status: int) -> Counter:
        key = (method, route, status)
        found = self.errors.get(key)
        if found is None:
            found = self.errors[key] = HTTP_REQUEST_ERRORS.labels(method, route, str(status), APP_NAME)
        return found

    def in_progress(self, method: str, route: str) -> Gauge:
        key = (method, route)
        found = self.running.get(key)
        if found is None:
            found = self.running[key] = HTTP_REQUESTS_IN_PROGRESS.labels(method, route, "200", APP_NAME)
        return found


class EdgeApp:
    """The edge in front of one route's handler (Litestar builds one per route)."""

    def __init__(self, app: ASGIApp, settings: Settings, limiter: RateLimiter, children: _Children) -> None:
        self.app = app
        self.settings = settings
        self.limiter = limiter
        self.children = children
        self.api_limit = Limit("api", settings.rate_limit_requests, settings.rate_limit_window_seconds)
        self.timeout = settings.api_request_timeout or None
        self.tracer = tracing.tracer("draftwire.http") if tracing.enabled() else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        route: str = scope.get("path_template") or scope["path"]
        method = str(scope.get("method", "GET"))
        span = token = None
        if self.tracer is not None and route not in UNTRACED:
            span, token = self._start_span(scope, method, route)
        try:
            await self._serve(scope, receive, send, route, method, span)
        finally:
            if span is not None and token is not None:
                span.end()
                otel_context.detach(token)

    def _start_span(self, scope: Scope, method: str, route: str) -> tuple[trace.Span, Token[Context]]:
        assert self.tracer is not None
        parent = None
        for name, value in scope["headers"]:
            if name == b"traceparent":
                parent = propagate.extract({"traceparent": value.decode("latin-1")})
                break
        span = self.tracer.start_span(
            f"{method} {route}",
            context=parent,
            kind=SpanKind.SERVER,
            attributes={
                "http.request.method": method,
                "http.route": route,
                "url.path": scope["path"],
                "url.scheme": scope.get("scheme", "http"),
                "network.protocol.version": scope.get("http_version", "1.1"),
            },
        )
        return span, otel_context.attach(trace.set_span_in_context(span))

    async def _serve(
        self, scope: Scope, receive: Receive, send: Send, route: str, method: str, span: trace.Span | None
    ) -> None:
        start = time.perf_counter()
        status = {"code": 500, "started": False, "ended": 0.0}

        async def tracked_send(message: Any) -> None:  # a plain dict: no TypedDict narrowing per message
            kind = message["type"]
            if kind == "http.response.start":
                status["code"] = message["status"]
                status["started"] = True
            elif kind == "http.response.body" and not message.get("more_body", False):
                status["ended"] = time.perf_counter()
            await send(message)

        quiet = route in QUIET_PATHS
        measured = route not in UNMEASURED
        running = self.children.in_progress(method, route) if measured else None
        if running is not None:
            running.inc()
        prefetch: _Prefetch | None = None
        try:
            length = _check_length(scope)
            if not quiet and (method, route) not in OWN_LIMIT and route.startswith("/api/"):
                if length and header(scope, b"expect") is None:
                    prefetch = _Prefetch(receive)
                    receive = prefetch
                principal = principal_of(ASGIConnection(scope), self.settings.jwt_verify_keys)
                client = f"u:{principal.user_id}" if principal else f"ip:{_client_ip(scope)}"
                await self.limiter.check(self.api_limit, client, route)
            async with asyncio.timeout(None if route in STREAMING else self.timeout):
                await self.app(scope, receive, tracked_send)
        except ApiError as exc:
            for message in _json_response(exc.status, error_body(exc.code, exc.detail), exc.headers):
                await tracked_send(message)
        except TimeoutError:
            if not status["started"]:
                body = error_body("request_timeout", "The request took too long and was stopped; retry shortly.")
                for message in _json_response(503, body, {"Retry-After": "5"}):
                    await tracked_send(message)
        finally:
            if prefetch is not None:
                prefetch.discard()
            code = int(status["code"])
            elapsed = (status["ended"] or time.perf_counter()) - start
            if running is not None:
                running.dec()
                self._measure(method, route, code, elapsed)
            if span is not None:
                span.set_attribute("http.response.status_code", code)
                if code >= 500:
                    span.set_status(Status(StatusCode.ERROR))
            if not quiet:
                log.info("request", method=method, route=route, status=code, latency_ms=round(elapsed * 1000, 2))

    def _measure(self, method: str, route: str, code: int, elapsed: float) -> None:
        found = exemplar()
        counter, histogram = self.children.finished(method, route, code)
        if found is None:
            counter.inc()
            histogram.observe(elapsed)
        else:
            counter.inc(exemplar=found)
            histogram.observe(elapsed, found)
        if code >= 500:
            self.children.error(method, route, code).inc()


def edge_middleware(settings: Settings, limiter: RateLimiter) -> Callable[[ASGIApp], ASGIApp]:
    """The middleware factory a role puts in its Litestar app (it wraps each route's handler)."""
    children = _Children()

    def wrap(app: ASGIApp) -> ASGIApp:
        return EdgeApp(app, settings, limiter, children)

    return wrap


def _check_length(scope: Scope) -> int | None:
    """The declared body length (None without one); 413 above :data:`MAX_BODY_BYTES`."""
    for name, value in scope["headers"]:
        if name == b"content-length":
            if not value.isdigit() or int(value) > MAX_BODY_BYTES:
                raise ApiError(413, "payload_too_large", f"Request bodies are limited to {MAX_BODY_BYTES} bytes.")
            return int(value)
    return None


class _Prefetch:
    """``receive`` with its first call made at once, for a request with a body that waits on the
    rate limit first: Granian starts reading the body on its own threads when ``receive()`` is
    called, so that round trip runs while Redis counts the request instead of after it (a
    ``receive()`` there is a round trip through its Rust threads; ``loadtests/bench_raw_body.py``).
    The app gets that first message from its first call. Under a server whose ``receive`` is a
    coroutine function nothing runs early and nothing changes.

    Not for ``Expect: 100-continue``: reading would make the server invite the body (up to
    :data:`MAX_BODY_BYTES`) before the limit has decided."""

    __slots__ = ("_first", "_receive")

    def __init__(self, receive: Receive) -> None:
        self._receive = receive
        self._first: Any = receive()

    async def __call__(self) -> ReceiveMessage:
        first = self._first
        if first is None:
            return await self._receive()
        self._first = None
        message: ReceiveMessage = await first
        return message

    def discard(self) -> None:
        """The request ended without reading its body (a 429, a 401, a timeout): stop the read.
        Granian's awaitable is cancelled, so its runtime lets go of the body and the connection
        closes at once instead of waiting on a client that never sends it; a coroutine is closed
        (no "never awaited" warning)."""
        first, self._first = self._first, None
        if first is None:
            return
        if hasattr(first, "cancel"):
            first.cancel()
        elif hasattr(first, "close"):
            first.close()


def _client_ip(scope: Scope) -> str:
    client: Any = scope.get("client")
    return str(client[0]) if client else "unknown"
