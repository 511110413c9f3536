"""The one way this project opens a Redis client."""

from __future__ import annotations

from redis.asyncio import Redis
from redis.driver_info import DriverInfo

_DRIVER_INFO = DriverInfo()
"""What ``CLIENT SETINFO`` reports, resolved once: left to redis-py, every new connection looks
its own version up in the installed packages' metadata (about 1 % of the API's CPU while a
burst grows the pool)."""


def redis_client(url: str) -> Redis:
    """Short timeouts: a hung Redis must fail requests fast (503), not pile them up."""
    return Redis.from_url(
        url,
        socket_timeout=5,
        socket_connect_timeout=2,
        health_check_interval=15,
        retry_on_timeout=False,
        driver_info=_DRIVER_INFO,
    )
