"""The platform one process runs on: its settings and shared clients (Redis, the Postgres pool,
the queues), the event log and the channel-owner registry.

A role's entry point creates one, hands features the parts each uses, opens it before serving
and closes it after. Handlers never reach it: they get typed dependencies. Nothing shared
between processes lives here; what several processes must agree on is in Redis or Postgres.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

from redis.asyncio import Redis

from app.config import Settings
from app.db import Database
from app.events import ChannelOwners, EventPublisher
from app.queue.names import QUEUES
from app.queue.redis_queue import DraftwireQueue
from app.ratelimit import RateLimiter
from app.redisconn import Pipelined, redis_client
from observability.logging import get_logger

log = get_logger("app.platform")

WARM_REDIS_CONNECTIONS = 16
"""Redis connections opened at start-up (more are opened on demand)."""
WARM_UP_TIMEOUT_S = 2.0


@dataclass
class Platform:
    settings: Settings
    redis: Redis
    db: Database
    queues: dict[str, DraftwireQueue]
    events: EventPublisher
    limiter: RateLimiter
    pipelined: Pipelined
    """The connection the per-request Redis calls share (the autosave and rate-limit scripts,
    single event announcements)."""
    owners: ChannelOwners = field(default_factory=ChannelOwners)
    scripts: list[str] = field(default_factory=list)
    """Lua scripts (their text) loaded at start-up (features add theirs)."""

    @classmethod
    def create(cls, settings: Settings, *, pool_max: int = 10, pool_min: int = 2) -> Platform:
        redis = redis_client(settings.redis_url)
        db = Database(
            url=settings.database_url, statement_timeout=settings.db_query_timeout, min_size=pool_min, max_size=pool_max
        )
        pipelined = Pipelined(settings.redis_url)
        limiter = RateLimiter(redis, pipelined)
        return cls(
            settings=settings,
            redis=redis,
            db=db,
            queues={name: DraftwireQueue(redis, name=name) for name in QUEUES},
            events=EventPublisher(db, redis, pipelined),
            limiter=limiter,
            pipelined=pipelined,
            scripts=list(limiter.scripts),
        )

    async def open(self) -> None:
        await self.db.open(wait=False)
        for queue in self.queues.values():
            await queue.connect()
        await self.warm_up()

    async def warm_up(self) -> None:
        """Open Redis connections, load the Lua scripts and fill the Postgres pool to its minimum
        before the first request, so the first burst after a start or deploy does not pay for
        connection set-up and NOSCRIPT retries (it was the slowest 0.1 s of every load test).
        Best effort and bounded: a Redis or Postgres that is down at start-up is the probes'
        business, not a reason to stay down."""
        try:
            async with asyncio.timeout(WARM_UP_TIMEOUT_S):
                outcomes = await asyncio.gather(
                    self.db.pool.wait(WARM_UP_TIMEOUT_S),
                    self.pipelined.call("PING"),
                    *(self.redis.ping() for _ in range(WARM_REDIS_CONNECTIONS)),
                    return_exceptions=True,  # Postgres slow to fill its pool must not stop the scripts
                )
                for failure in {type(o).__name__ for o in outcomes if isinstance(o, BaseException)}:
                    log.warning("warm_up_incomplete", error=failure)
                for script in self.scripts:
                    await self.redis.script_load(script)
        except Exception as exc:
            log.warning("warm_up_incomplete", error=type(exc).__name__)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.db.close()
        with contextlib.suppress(Exception):
            await self.pipelined.close()
        with contextlib.suppress(Exception):
            await self.redis.aclose()
            await self.redis.connection_pool.disconnect()
