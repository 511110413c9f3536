"""The one way this project opens a Redis client."""

from __future__ import annotations

from redis.asyncio import Redis


def redis_client(url: str) -> Redis:
    """Short timeouts: a hung Redis must fail requests fast (503), not pile them up."""
    return Redis.from_url(
        url, socket_timeout=5, socket_connect_timeout=2, health_check_interval=15, retry_on_timeout=False
    )
