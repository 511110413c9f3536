"""``/healthz`` (alive), ``/readyz`` (dependencies, bounded to 1 s), ``/health`` (summary) and
``/metrics`` (Prometheus text, or OpenMetrics with exemplars when the scraper asks for it)."""

from __future__ import annotations

import asyncio
from typing import Any

from litestar import Request, Response, get
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from prometheus_client.openmetrics.exposition import CONTENT_TYPE_LATEST as OPENMETRICS_TYPE
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_latest

from observability.metrics import READYZ_UP


@get("/healthz", sync_to_thread=False, include_in_schema=False)
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@get("/readyz", include_in_schema=False)
async def readyz(request: Request[Any, Any, Any]) -> Response[dict[str, Any]]:
    runtime = request.app.state.runtime
    database, redis, migrations = await asyncio.gather(
        runtime.check_database(), runtime.check_redis(), runtime.check_migrations()
    )
    if database:  # without a database the migration check cannot tell anything
        migrations = None
    checks = {"database": database or "ok", "redis": redis or "ok", "migrations": migrations or "ok"}
    ready = not (database or redis or migrations)
    READYZ_UP.set(1 if ready else 0)
    if ready:
        return Response({"status": "ready", "checks": checks})
    failing = [text for text in (database, migrations, redis) if text]
    return Response(
        {"status": "not_ready", "error": "not_ready", "detail": "; ".join(failing), "checks": checks},
        status_code=503,
        headers={"Retry-After": "5"},
    )


@get("/health", include_in_schema=False)
async def health(request: Request[Any, Any, Any]) -> Response[dict[str, Any]]:
    runtime = request.app.state.runtime
    database, redis = await asyncio.gather(runtime.check_database(), runtime.check_redis())
    autosave: dict[str, Any] = {"pending": None, "lastFlushAt": None, "lastFlushOk": None}
    if not redis:
        try:
            async with asyncio.timeout(0.5):
                autosave = {"pending": await runtime.drafts.pending(), **await runtime.drafts.last_flush()}
        except Exception:  # noqa: S110 - reported as unknown
            pass
    ok = not (database or redis)
    body = {
        "status": "ok" if ok else "degraded",
        "database": "unhealthy" if database else "healthy",
        "redis": "unhealthy" if redis else "healthy",
        "autosave": autosave,
    }
    return Response(body, status_code=200 if ok else 503, headers=None if ok else {"Retry-After": "5"})


def metrics_response(accept: str) -> tuple[bytes, str]:
    """Exposition bytes and content type; OpenMetrics (with exemplars) when asked for."""
    if "application/openmetrics-text" in accept:
        return openmetrics_latest(REGISTRY), OPENMETRICS_TYPE
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


@get("/metrics", include_in_schema=False, sync_to_thread=False)
def metrics(request: Request[Any, Any, Any]) -> Response[bytes]:
    body, content_type = metrics_response(request.headers.get("accept", ""))
    return Response(body, media_type=content_type)
