"""Sliding-window rate limits kept in Redis, so every API process shares one count.

The window logic is a Lua fragment (:data:`SLIDING_WINDOW_LUA`) so it can run inside other
scripts too: autosave checks its per-user limit in the same round trip as the save itself.
A refusal carries how long until the oldest entry leaves the window: ``Retry-After``.
"""

from __future__ import annotations

import itertools
import math
import os
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.exceptions import RedisError

from app.errors import ApiError
from app.redisconn import Pipelined, Script
from observability.logging import get_logger
from observability.metrics import RATE_LIMIT_EVENTS

log = get_logger(__name__)

SLIDING_WINDOW_LUA = """
local function rl_wait(key, window, limit)
    local t = redis.call('TIME')
    local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
    redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
    if redis.call('ZCARD', key) >= limit then
        local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
        return tonumber(oldest[2]) + window - now, now
    end
    return nil, now
end
local function rl_admit(key, now, window, member)
    redis.call('ZADD', key, now, member)
    redis.call('PEXPIRE', key, window)
end
"""
"""``rl_wait(key, window_ms, limit)`` -> ms to wait (nil if admitted), now; ``rl_admit`` counts one."""

_CHECK = (
    SLIDING_WINDOW_LUA
    + """
local wait, now = rl_wait(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]))
if wait then return {0, wait} end
rl_admit(KEYS[1], now, tonumber(ARGV[1]), ARGV[3])
return {1, 0}
"""
)


@dataclass(frozen=True)
class Limit:
    """``requests`` per ``window_s`` seconds for one scope (``autosave``, ``api``)."""

    scope: str
    requests: int
    window_s: float

    def key(self, client: str) -> str:
        return f"dw:rl:{self.scope}:{client}"

    @property
    def window_ms(self) -> int:
        return int(self.window_s * 1000)


_members = itertools.count()
_prefix = f"{os.getpid()}-"


def member() -> str:
    """A unique entry for one counted request."""
    return f"{_prefix}{next(_members)}"


def refused(limit: Limit, retry_ms: int, endpoint: str) -> ApiError:
    """Count, log and describe one refusal (429 with Retry-After)."""
    retry_after = max(1, math.ceil(int(retry_ms) / 1000))
    RATE_LIMIT_EVENTS.labels(limit.scope, endpoint).inc()
    log.info("rate_limited", scope=limit.scope, route=endpoint, retry_after_s=retry_after)
    return ApiError(
        429,
        "rate_limited",
        f"Too many requests: at most {limit.requests} per {int(limit.window_s)} s; retry in {retry_after} s.",
        headers={"Retry-After": str(retry_after)},
    )


class RateLimiter:
    def __init__(self, redis: Redis, pipelined: Pipelined) -> None:
        self._pipelined = pipelined
        self._check = Script("ratelimit.check", _CHECK)

    @property
    def scripts(self) -> list[str]:
        """Its Lua script, loaded into Redis at start-up (see Platform.warm_up)."""
        return [_CHECK]

    async def check(self, limit: Limit, client: str, endpoint: str) -> None:
        """Count one request of ``client``; raise a 429 ApiError when over the limit."""
        try:
            keys, args = [limit.key(client)], [limit.window_ms, limit.requests, member()]
            allowed, retry_ms = await self._pipelined.run(self._check, keys, args)
        except RedisError as exc:
            # Fail open: without Redis the limit cannot be shared, and refusing every request
            # would turn a Redis outage into a full API outage. Writes that need Redis fail on
            # their own with 503; /readyz and redis_up report the outage.
            log.warning("rate_limit_unavailable", scope=limit.scope, route=endpoint, error=type(exc).__name__)
            return
        if not allowed:
            raise refused(limit, retry_ms, endpoint)
