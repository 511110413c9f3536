"""``/healthz`` (alive), ``/readyz`` (dependencies, bounded to 1 s), ``/health`` (summary) and
``/metrics`` (Prometheus text, or OpenMetrics with exemplars when the scraper asks for it), and
the :class:`Readiness` probes behind them, kept fresh for Prometheus by a background loop."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg
from litestar import Request, Response, get
from litestar.di import NamedDependency
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from prometheus_client.openmetrics.exposition import CONTENT_TYPE_LATEST as OPENMETRICS_TYPE
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_latest
from redis.asyncio import Redis

from app.db import Database
from app.db.migrate import available
from app.queue.redis_queue import DraftwireQueue
from observability.metrics import DATABASE_UP, DB_QUERY_DURATION, QUEUE_DEPTH, READYZ_UP, REDIS_UP, observe

PROBE_TIMEOUT_S = 0.8
"""Each dependency check gives up after this, so /readyz answers within 1 s."""
PROBE_EVERY_S = 5.0
"""How often the background loop refreshes redis_up, database_up, readyz_up and queue_depth."""

Section = Callable[[bool], Awaitable[dict[str, Any]]]
"""A feature's part of ``GET /health``, given whether Redis answered; bounded, never raises."""


class Readiness:
    """Bounded checks of Redis, Postgres and the schema, in the contract's failure words."""

    def __init__(self, *, redis: Redis, db: Database, database_url: str, queues: dict[str, DraftwireQueue]) -> None:
        self.redis = redis
        self.db = db
        self.database_url = database_url
        self.queues = queues
        self.sections: dict[str, Section] = {}
        self._migrations_ok = False
        self._task: asyncio.Task[None] | None = None

    async def check_redis(self) -> str | None:
        """None when Redis answers a PING in time, else the contract's failure text."""
        try:
            async with asyncio.timeout(PROBE_TIMEOUT_S):
                await self.redis.ping()
        except Exception:
            REDIS_UP.set(0)
            return "redis ping failed"
        REDIS_UP.set(1)
        return None

    async def check_database(self) -> str | None:
        """None when Postgres answers. Until migrations are known to be applied the check uses a
        direct connection as the URL's role: before them the application role does not exist."""
        try:
            async with asyncio.timeout(PROBE_TIMEOUT_S):
                if self._migrations_ok:
                    await self.db.ping()
                else:
                    await self._direct("SELECT 1")
        except Exception:
            DATABASE_UP.set(0)
            return "database ping failed"
        DATABASE_UP.set(1)
        return None

    async def check_migrations(self) -> str | None:
        """Compare ``schema_migrations`` with the shipped files (as the URL's role); once all are
        applied the answer is cached: migrations never un-apply in a running process."""
        if self._migrations_ok:
            return None
        try:
            async with asyncio.timeout(PROBE_TIMEOUT_S):
                rows = await self._direct(
                    "SELECT version FROM schema_migrations WHERE to_regclass('public.schema_migrations') IS NOT NULL",
                    "migrations.check",
                )
        except (psycopg.errors.UndefinedTable, Exception):
            return "migrations pending"
        done = {r[0] for r in rows}
        if any(m.version not in done for m in available()):
            return "migrations pending"
        self._migrations_ok = True
        return None

    async def _direct(self, sql: str, operation: str = "ping") -> list[tuple[object, ...]]:
        start = time.perf_counter()
        async with await psycopg.AsyncConnection.connect(self.database_url, connect_timeout=1) as conn:
            cur = await conn.execute(sql)
            rows = await cur.fetchall()
        observe(DB_QUERY_DURATION.labels(operation), time.perf_counter() - start)
        return rows

    async def refresh_queue_depth(self) -> dict[str, dict[str, int]]:
        depths = {}
        for name, queue in self.queues.items():
            depths[name] = await queue.depth()
            for state, value in depths[name].items():
                QUEUE_DEPTH.labels(name, state).set(value)
        return depths

    async def _loop(self, every: float) -> None:
        """Keep redis_up / database_up / queue_depth fresh for Prometheus even with no traffic."""
        while True:
            results = await asyncio.gather(
                self.check_redis(), self.check_database(), self.check_migrations(), return_exceptions=True
            )
            READYZ_UP.set(1 if all(r is None for r in results) else 0)
            with contextlib.suppress(Exception):
                await self.refresh_queue_depth()
            await asyncio.sleep(every)

    def start(self, every: float = PROBE_EVERY_S) -> None:
        self._task = asyncio.create_task(self._loop(every), name="dependency-probe")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


@get("/healthz", sync_to_thread=False, include_in_schema=False)
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@get("/readyz", include_in_schema=False)
async def readyz(readiness: NamedDependency[Readiness]) -> Response[dict[str, Any]]:
    database, redis, migrations = await asyncio.gather(
        readiness.check_database(), readiness.check_redis(), readiness.check_migrations()
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
async def health(readiness: NamedDependency[Readiness]) -> Response[dict[str, Any]]:
    database, redis = await asyncio.gather(readiness.check_database(), readiness.check_redis())
    ok = not (database or redis)
    body: dict[str, Any] = {
        "status": "ok" if ok else "degraded",
        "database": "unhealthy" if database else "healthy",
        "redis": "unhealthy" if redis else "healthy",
    }
    for name, section in readiness.sections.items():
        body[name] = await section(redis is None)
    return Response(body, status_code=200 if ok else 503, headers=None if ok else {"Retry-After": "5"})


def metrics_response(accept: str) -> tuple[bytes, str]:
    """Exposition bytes and content type; OpenMetrics (with exemplars) when asked for."""
    if "application/openmetrics-text" in accept:
        return openmetrics_latest(REGISTRY), OPENMETRICS_TYPE  # type: ignore[no-untyped-call]
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


@get("/metrics", include_in_schema=False, sync_to_thread=False)
def metrics(request: Request[Any, Any, Any]) -> Response[bytes]:
    body, content_type = metrics_response(request.headers.get("accept", ""))
    return Response(body, media_type=content_type)


ROUTES = [healthz, readyz, health, metrics]
