"""structlog set-up: one JSON object a line with ``timestamp``, ``level``, ``msg``, trace ids.

Secrets and draft content never reach a log line: :func:`redact` drops known-sensitive keys
whatever the caller passed, so a careless ``log.info(..., payload=body)`` cannot leak, and
:func:`redact_url_tokens` blanks a token in a URL that a library writes into its message (uvicorn
logs each WebSocket handshake as ``"WebSocket /ws?token=..." [accepted]``).
"""

from __future__ import annotations

import logging
import re
import sys
from typing import Any

import structlog
from opentelemetry import trace
from structlog.types import EventDict, Processor, WrappedLogger

# Keys that may carry a secret or a draft's content. Matched case-insensitively, whole key.
SENSITIVE_KEYS = frozenset(
    {"token", "authorization", "cookie", "password", "secret", "jwt_secret", "payload", "body", "title", "data"}
)


def add_trace_ids(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
    """Add ``trace_id``/``span_id`` of the current span so a log line links to its trace."""
    ctx = trace.get_current_span().get_span_context()
    if ctx.is_valid:
        event.setdefault("trace_id", format(ctx.trace_id, "032x"))
        event.setdefault("span_id", format(ctx.span_id, "016x"))
    return event


def redact(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
    """Drop every key that may carry a secret or draft content."""
    for key in [k for k in event if k.lower() in SENSITIVE_KEYS]:
        del event[key]
    return event


_URL_TOKEN = re.compile(r"([?&](?:access_)?token=)[^&\s\"']+", re.IGNORECASE)


def redact_url_tokens(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
    """Blank the value of ``token=`` in any query string in the message (streams take the session
    as ``?token=``, since a browser cannot set headers on a WebSocket or an EventSource)."""
    message = event.get("event")
    if isinstance(message, str) and "oken=" in message:
        event["event"] = _URL_TOKEN.sub(r"\1[redacted]", message)
    return event


def shared_processors() -> list[Processor]:
    """Processors for both structlog and stdlib records (SAQ, Granian, psycopg)."""
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp"),
        add_trace_ids,
        redact,
        redact_url_tokens,
        structlog.processors.format_exc_info,
        structlog.processors.EventRenamer("msg"),
    ]


def renderer(fmt: str) -> Processor:
    if fmt == "console":
        return structlog.dev.ConsoleRenderer(event_key="msg")
    return structlog.processors.JSONRenderer(sort_keys=False)


def configure(level: str = "INFO", fmt: str = "json") -> None:
    """Our own log lines go through structlog's native logger straight to stdout (no stdlib
    record per line: it is on every request's path); stdlib records (SAQ, psycopg, Granian) are
    rendered by the same processors through a handler on the root logger."""
    numeric = logging.getLevelNamesMapping()[level]
    structlog.configure(
        processors=[*shared_processors(), renderer(fmt)],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.WriteLoggerFactory(sys.stdout),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer(fmt)],
            foreign_pre_chain=[structlog.stdlib.ExtraAdder(), *shared_processors()],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric)
    # SAQ logs every enqueue/finish at INFO with the job's kwargs (which hold draft ids); keep it quiet.
    logging.getLogger("saq").setLevel(max(numeric, logging.WARNING))


def get_logger(name: str | None = None, **initial: Any) -> Any:
    """A structlog logger (``name`` is kept for readers; the line format does not print it)."""
    return structlog.get_logger(name, **initial)
