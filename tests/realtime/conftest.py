"""Fixtures for the realtime gateway tests: one shared API process with limits loosened where a
test does not exercise them (publishing 1,000 events must not trip the per-client rate limit)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import httpx
import pytest

from tests.support.processes import ServiceProcess

RT_ENV = {
    "RATE_LIMIT_REQUESTS": "1000000",
    "REALTIME_MAX_PER_CLIENT": "200",
    "REALTIME_MAX_CONNECTIONS": "1000",
    "REALTIME_CATCHUP_PAGE": "50",
}


@pytest.fixture(scope="session")
def rt_api(spawn: Callable[..., ServiceProcess]) -> ServiceProcess:
    """An API process for realtime tests (small replay pages, so paging is exercised)."""
    return spawn("api", **RT_ENV)


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10) as client:
        yield client


@pytest.fixture
def admin(token: Callable[..., str]) -> str:
    return token("ops-admin", admin=True)
