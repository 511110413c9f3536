"""OpenTelemetry set-up from the standard ``OTEL_*`` variables, and trace context carriers.

Export happens only when ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``OTEL_TRACES_EXPORTER``) says so;
otherwise spans are still created, so ``trace_id`` reaches logs and exemplars.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from opentelemetry import context, propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

_configured = False


def enabled() -> bool:
    """False when ``OTEL_SDK_DISABLED=true``: no span is made at all, so none is paid for."""
    return os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() != "true"


def configure(service_name: str, *extra_processors: SpanProcessor) -> TracerProvider:
    """Install a TracerProvider once per process; instrument redis and psycopg (unless the SDK is
    disabled: the instrumentation's wrappers would then cost a call per command for nothing)."""
    global _configured
    provider = trace.get_tracer_provider()
    if _configured and isinstance(provider, TracerProvider):
        for processor in extra_processors:
            provider.add_span_processor(processor)
        return provider
    resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", service_name)})
    provider = TracerProvider(resource=resource)  # sampler from OTEL_TRACES_SAMPLER
    exporter = os.environ.get("OTEL_TRACES_EXPORTER", "otlp" if _otlp_endpoint() else "none")
    if exporter == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    elif exporter == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
    for processor in extra_processors:
        provider.add_span_processor(processor)
    trace.set_tracer_provider(provider)
    if enabled():
        _instrument_clients()
    _configured = True
    return provider


def _otlp_endpoint() -> str | None:
    return os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")


def _instrument_clients() -> None:
    from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor
    from opentelemetry.instrumentation.redis import RedisInstrumentor

    RedisInstrumentor().instrument()
    # enable_commenter stays off: SQL comments would defeat Postgres' statement cache.
    PsycopgInstrumentor().instrument(skip_dep_check=True)


def tracer(name: str = "draftwire") -> trace.Tracer:
    return trace.get_tracer(name)


def inject() -> dict[str, str]:
    """The current trace context as a small dict (W3C traceparent) to carry in a job or event."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier


def extract(carrier: Mapping[str, Any] | None) -> context.Context:
    """A context whose parent is the span that :func:`inject` captured (or an empty one)."""
    return propagate.extract(dict(carrier or {}))


def link_from(carrier: Mapping[str, Any] | None) -> list[trace.Link]:
    """A span link to the carrier's span, for work that is caused by it but not its child (a retry)."""
    span_ctx = trace.get_current_span(extract(carrier)).get_span_context()
    return [trace.Link(span_ctx)] if span_ctx.is_valid else []
