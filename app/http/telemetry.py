"""Telemetry wiring as Litestar plugins: OpenTelemetry, Prometheus and structlog, each Litestar's
own. The order matters: the OTel middleware is outermost (the plugin puts it there), so the
Prometheus middleware observes inside the request span and can attach its trace id as exemplar."""

from __future__ import annotations

import re
from typing import Any

from litestar.connection import Request
from litestar.enums import ScopeType
from litestar.logging.config import StructLoggingConfig
from litestar.plugins.opentelemetry import OpenTelemetryConfig, OpenTelemetryPlugin
from litestar.plugins.prometheus import PrometheusConfig
from litestar.plugins.structlog import StructlogConfig, StructlogPlugin
from opentelemetry.trace import Span

from app.config import Settings
from observability import logging as obs_logging
from observability.metrics import FAST_BUCKETS, exemplar


def _exemplar(_: Request[Any, Any, Any]) -> dict[str, str]:
    return exemplar() or {}


def prometheus_config() -> PrometheusConfig:
    # prefix="http" + group_path=True gives the contract's http_requests_total and
    # http_request_duration_seconds labelled by route template. WebSocket scopes stay out.
    return PrometheusConfig(
        app_name="draftwire",
        prefix="http",
        group_path=True,
        buckets=list(FAST_BUCKETS),
        exemplars=_exemplar,
        scopes={ScopeType.HTTP},
        exclude=["^/metrics$"],
    )


_TOKEN_IN_QUERY = re.compile(r"(?i)(token=)[^&#\s]*")


def redact_query(span: Span, scope: dict[str, Any]) -> None:
    """Server-span hook: a session token sent as ``?token=`` (meant for streams, ignored on
    other routes) never reaches the span's URL attributes (``http.url``, ``http.target``,
    ``url.query``, ...) and so never the trace backend."""
    if b"token=" not in scope.get("query_string", b"").lower():
        return
    for key, value in (getattr(span, "attributes", None) or {}).items():
        if isinstance(value, str) and "token=" in value.lower():
            span.set_attribute(key, _TOKEN_IN_QUERY.sub(r"\1REDACTED", value))


def opentelemetry_plugin() -> OpenTelemetryPlugin:
    # Streams (/ws, SSE) live for hours and would get a span per frame: the realtime gateway
    # makes its own delivery spans, continuing each event's trace instead. No child spans per
    # ASGI receive/send message either: they cost more than the request's own work and say
    # nothing the server span does not.
    return OpenTelemetryPlugin(
        OpenTelemetryConfig(
            exclude=["^/metrics$", "^/healthz$", "^/readyz$", "^/ws$", "^/api/events$"],
            exclude_spans=["receive", "send"],
            server_request_hook_handler=redact_query,
        )
    )


def structlog_plugin(settings: Settings) -> StructlogPlugin:
    obs_logging.configure(settings.log_level, settings.log_format)
    # Our processors and handler are installed by observability.logging.configure; the plugin
    # gives handlers the same logger. Litestar's request logging is off: ours writes the
    # contract's `request` line (route, status, latency_ms) in app.http.edge.
    import structlog

    logging_config = StructLoggingConfig(
        processors=structlog.get_config()["processors"],
        logger_factory=structlog.get_config()["logger_factory"],
        wrapper_class=structlog.get_config()["wrapper_class"],
        log_exceptions="never",
        standard_lib_logging_config=None,
    )
    logging_config.standard_lib_logging_config = None
    return StructlogPlugin(StructlogConfig(structlog_logging_config=logging_config, enable_middleware_logging=False))
