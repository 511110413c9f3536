"""Sliding-window rate limits kept in Redis, so every API process shares one count.

One Lua call per check: drop entries older than the window, count, admit or refuse. A refusal
carries how long until the oldest entry leaves the window, which becomes ``Retry-After``.
"""

from __future__ import annotations

import itertools
import math
import os
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.exceptions import RedisError

from app.errors import ApiError
from observability.logging import get_logger
from observability.metrics import RATE_LIMIT_EVENTS

log = get_logger(__name__)

_SLIDING_WINDOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) >= limit then
    local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
    return {0, tonumber(oldest[2]) + window - now}
end
redis.call('ZADD', KEYS[1], now, ARGV[3])
redis.call('PEXPIRE', KEYS[1], window)
return {1, 0}
"""


@dataclass(frozen=True)
class Limit:
    """``requests`` per ``window_s`` seconds for one scope (``autosave``, ``api``)."""

    scope: str
    requests: int
    window_s: float


class RateLimiter:
    def __init__(self, redis: Redis) -> None:
        self._script = redis.register_script(_SLIDING_WINDOW)
        self._ids = itertools.count()
        self._prefix = f"{os.getpid()}-{id(self)}-"

    async def check(self, limit: Limit, client: str, endpoint: str) -> None:
        """Count one request of ``client``; raise a 429 ApiError when over the limit."""
        try:
            allowed, retry_ms = await self._script(
                keys=[f"dw:rl:{limit.scope}:{client}"],
                args=[int(limit.window_s * 1000), limit.requests, f"{self._prefix}{next(self._ids)}"],
            )
        except RedisError as exc:
            # Fail open: without Redis the limit cannot be shared, and refusing every request
            # would turn a Redis outage into a full API outage. Writes that need Redis fail on
            # their own with 503; /readyz and redis_up report the outage.
            log.warning("rate_limit_unavailable", scope=limit.scope, route=endpoint, error=type(exc).__name__)
            return
        if allowed:
            return
        retry_after = max(1, math.ceil(int(retry_ms) / 1000))
        RATE_LIMIT_EVENTS.labels(limit.scope, endpoint).inc()
        log.info("rate_limited", scope=limit.scope, route=endpoint, retry_after_s=retry_after)
        raise ApiError(
            429,
            "rate_limited",
            f"Too many requests: at most {limit.requests} per {int(limit.window_s)} s; retry in {retry_after} s.",
            headers={"Retry-After": str(retry_after)},
        )
