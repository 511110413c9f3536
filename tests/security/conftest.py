"""Fixtures of the security suite: one API and one worker of its own (own Redis database, limits
loosened where a test does not exercise them, a password in DATABASE_URL so the telemetry scan
can look for it), and tokens remembered so that scan can look for every one of them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from app.auth import issue
from tests.support.processes import TEST_SECRET, ServiceProcess

DB_PASSWORD = "pw-not-for-logs-7f3a"  # noqa: S105 - a marker: trust auth ignores it, logs must not show it
LOOSE = {
    "RATE_LIMIT_REQUESTS": "1000000",
    "AUTOSAVE_RATE_LIMIT_PER_MINUTE": "1000000",
    "REALTIME_MAX_PER_CLIENT": "200",
    "REALTIME_MAX_CONNECTIONS": "1000",
    "AUTOSAVE_FLUSH_DELAY": "200ms",
}
ISSUED: list[str] = []
"""Every token the suite made; tests/security/test_zz_telemetry.py looks for each in the logs."""
SECRETS: list[str] = [TEST_SECRET, DB_PASSWORD]
"""Secrets the suite used (rotation tests add theirs), for the same scan."""
PROCESSES: list[ServiceProcess] = []
"""Every process the suite started, for the same scan."""


def with_password(url: str) -> str:
    scheme, rest = url.split("://", 1)
    user, host = rest.split("@", 1)
    return f"{scheme}://{user.split(':')[0]}:{DB_PASSWORD}@{host}"


@pytest.fixture(scope="session")
def sec_redis_url(fresh_redis_url: Callable[[], str]) -> str:
    return fresh_redis_url()


@pytest.fixture(scope="session")
def sec_env(migrated: str, sec_redis_url: str) -> dict[str, str]:
    return {**LOOSE, "DATABASE_URL": with_password(migrated), "REDIS_URL": sec_redis_url}


@pytest.fixture(scope="session")
def sec_spawn(spawn: Callable[..., ServiceProcess], sec_env: dict[str, str]) -> Callable[..., ServiceProcess]:
    """``sec_spawn("api", **env)``: a process of this suite (recorded for the telemetry scan)."""

    def make(kind: str, **env: str) -> ServiceProcess:
        proc = spawn(kind, **{**sec_env, **env})
        PROCESSES.append(proc)
        return proc

    return make


@pytest.fixture(scope="session")
def sec_api(sec_spawn: Callable[..., ServiceProcess]) -> ServiceProcess:
    return sec_spawn("api")


@pytest.fixture(scope="session")
def sec_worker(sec_spawn: Callable[..., ServiceProcess]) -> ServiceProcess:
    return sec_spawn("worker")


@pytest.fixture(scope="session")
def mint() -> Callable[..., str]:
    """``mint(user, admin=False, ttl=3600, secret=TEST_SECRET)``: a token, remembered."""

    def make(user: str, *, admin: bool = False, ttl: float = 3600, secret: str = TEST_SECRET) -> str:
        token = issue(secret, user, admin=admin, ttl_seconds=ttl)
        ISSUED.append(token)
        return token

    return make


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10) as client:
        yield client


def bearer(token: str) -> dict[str, Any]:
    return {"Authorization": f"Bearer {token}"}
