"""The process's shared clients (Redis, Postgres pool, queues) and the services built on them.

Created once per process by the API's lifespan or the worker's start-up; handlers reach it as
``request.app.state.runtime``. Nothing shared between processes lives here: state that several
API or worker processes must agree on is in Redis or Postgres.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from dataclasses import dataclass, field

import psycopg
from redis.asyncio import Redis

from app.autosave.service import AutosaveService
from app.autosave.store import DraftStore
from app.config import Settings
from app.db import Database
from app.db.migrate import available
from app.queue.names import QUEUES
from app.queue.redis_queue import DraftwireQueue
from app.ratelimit import RateLimiter
from app.realtime.events import EventPublisher
from observability.logging import get_logger
from observability.metrics import DATABASE_UP, DB_QUERY_DURATION, QUEUE_DEPTH, READYZ_UP, REDIS_UP, observe

log = get_logger("app.runtime")

PROBE_TIMEOUT_S = 0.8
"""Each dependency check gives up after this, so /readyz answers within 1 s."""


WARM_REDIS_CONNECTIONS = 16
"""Redis connections opened at start-up (more are opened on demand)."""
WARM_UP_TIMEOUT_S = 2.0


GC_THRESHOLDS = (50_000, 20, 1_000)
"""Young collections every 50,000 net allocations, a middle one every 20 of those, a full one
every 1,000 middle ones: under load about every quarter of an hour instead of every few
seconds (each full collection measured 13-57 ms, stalling every request in flight)."""


def _tune_gc() -> None:
    """Fewer, cheaper garbage collections: everything allocated at start-up (modules, routes,
    the app, warm connections) is frozen out of the collector's view, and collections run less
    often. A full collection over a warm heap is a latency spike of tens of ms on every request
    it lands on; this keeps p99 near p95. Cycles that outlive two young collections wait longer
    for the full one; the heap they hold stays small next to that of a request burst."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def redis_client(url: str) -> Redis:
    # Short timeouts: a hung Redis must fail requests fast (503), not pile them up.
    return Redis.from_url(
        url, socket_timeout=5, socket_connect_timeout=2, health_check_interval=15, retry_on_timeout=False
    )


@dataclass
class Runtime:
    settings: Settings
    redis: Redis
    db: Database
    queues: dict[str, DraftwireQueue]
    drafts: DraftStore
    limiter: RateLimiter
    events: EventPublisher
    autosave: AutosaveService
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _migrations_ok: bool = False

    @classmethod
    def create(cls, settings: Settings, *, pool_max: int = 10) -> Runtime:
        redis = redis_client(settings.redis_url)
        db = Database(url=settings.database_url, statement_timeout=settings.db_query_timeout, max_size=pool_max)
        queues = {name: DraftwireQueue(redis, name=name) for name in QUEUES}
        drafts = DraftStore(redis)
        return cls(
            settings=settings,
            redis=redis,
            db=db,
            queues=queues,
            drafts=drafts,
            limiter=RateLimiter(redis),
            events=EventPublisher(db, redis),
            autosave=AutosaveService(settings=settings, store=drafts, db=db, queue=queues["draft-autosave"]),
        )

    async def start(self) -> None:
        await self.db.open(wait=False)
        for queue in self.queues.values():
            await queue.connect()
        await self.warm_up()
        _tune_gc()
        self._tasks.append(asyncio.create_task(self._probe_loop(), name="dependency-probe"))

    async def warm_up(self) -> None:
        """Open Redis connections and load the Lua scripts before the first request, so the first
        burst after a start or deploy does not pay for connection set-up and NOSCRIPT retries
        (it was the slowest 0.1 s of every load test). Best effort and bounded: a Redis that is
        down at start-up is the probes' business, not a reason to stay down."""
        try:
            async with asyncio.timeout(WARM_UP_TIMEOUT_S):
                await asyncio.gather(*(self.redis.ping() for _ in range(WARM_REDIS_CONNECTIONS)))
                for script in [*self.drafts.scripts, *self.limiter.scripts]:
                    await self.redis.script_load(script.script)
        except Exception as exc:
            log.warning("warm_up_incomplete", error=type(exc).__name__)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        with contextlib.suppress(Exception):
            await self.db.close()
        with contextlib.suppress(Exception):
            await self.redis.aclose()
            await self.redis.connection_pool.disconnect()

    # --- dependency checks (bounded) --------------------------------------------------------
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
        except psycopg.errors.UndefinedTable:
            return "migrations pending"
        except Exception:
            return "migrations pending"
        done = {r[0] for r in rows}
        if any(m.version not in done for m in available()):
            return "migrations pending"
        self._migrations_ok = True
        return None

    async def _direct(self, sql: str, operation: str = "ping") -> list[tuple[object, ...]]:
        start = time.perf_counter()
        async with await psycopg.AsyncConnection.connect(self.settings.database_url, connect_timeout=1) as conn:
            cur = await conn.execute(sql)
            rows = await cur.fetchall()
        observe(DB_QUERY_DURATION.labels(operation), time.perf_counter() - start)
        return rows

    async def _probe_loop(self, every: float = 5.0) -> None:
        """Keep redis_up / database_up / queue_depth fresh for Prometheus even with no traffic."""
        while True:
            results = await asyncio.gather(
                self.check_redis(), self.check_database(), self.check_migrations(), return_exceptions=True
            )
            READYZ_UP.set(1 if all(r is None for r in results) else 0)
            with contextlib.suppress(Exception):
                await self.refresh_queue_depth()
            await asyncio.sleep(every)

    async def refresh_queue_depth(self) -> dict[str, dict[str, int]]:
        depths = {}
        for name, queue in self.queues.items():
            depths[name] = await queue.depth()
            for state, value in depths[name].items():
                QUEUE_DEPTH.labels(name, state).set(value)
        return depths
