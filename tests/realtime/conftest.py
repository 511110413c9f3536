"""Fixtures for the realtime gateway tests: every test that opens a stream runs twice, once
against ``draftwire api`` serving the streams itself and once against ``draftwire gateway`` (events
published through an API, delivered by the gateway), with limits loosened where a test does not
exercise them (publishing 1,000 events must not trip the per-client rate limit)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.support.processes import ServiceProcess

RT_ENV = {
    "RATE_LIMIT_REQUESTS": "1000000",
    "REALTIME_MAX_PER_CLIENT": "200",
    "REALTIME_MAX_CONNECTIONS": "1000",
    "REALTIME_CATCHUP_PAGE": "50",
}
SERVINGS = ("api", "gateway")
"""The two ways of serving streams: the API itself, or a gateway process beside it."""


@dataclass
class Realtime:
    """Where a test opens streams (``url``: the API itself, or a gateway) and where it publishes
    (``api_url``). Process-level checks (logs, metrics, pid, stop, start) are those of the
    process serving the streams."""

    streams: ServiceProcess
    api: ServiceProcess
    own_api: bool = False
    """The API was started for this stack alone (stopped with it)."""

    @property
    def url(self) -> str:
        return self.streams.url

    @property
    def api_url(self) -> str:
        return self.api.url

    @property
    def proc(self) -> Any:
        return self.streams.proc

    def metric(self, name: str, labels: dict[str, str] | None = None) -> float:
        return self.streams.metric(name, labels)

    def logs(self) -> list[dict[str, Any]]:
        return self.streams.logs()

    def start(self) -> None:
        self.streams.start()

    def stop(self) -> int | None:
        """Stop the stream server, and the API too when it was started for this stack alone."""
        code = self.streams.stop()
        if self.own_api:
            self.api.stop()
        return code


@pytest.fixture(scope="session", params=SERVINGS)
def serving(request: pytest.FixtureRequest) -> str:
    """``api`` or ``gateway``: which process serves the streams in this run of the test."""
    return str(request.param)


@pytest.fixture(scope="session")
def publisher(spawn: Callable[..., ServiceProcess]) -> ServiceProcess:
    """The API the gateway runs of the session publish through (RT_ENV, the session's Redis)."""
    return spawn("api", **RT_ENV)


@pytest.fixture(scope="session")
def rt_stack(spawn: Callable[..., ServiceProcess], serving: str,
             request: pytest.FixtureRequest) -> Callable[..., Realtime]:
    """``rt_stack(**env)``: streams served the way of this run with ``env`` on top of the session's:
    an API alone, or a gateway (``env``) beside an API (the shared one when ``env`` leaves Redis
    alone, else one with the same ``env``)."""

    def make(**env: str) -> Realtime:
        if serving == "api":
            api = spawn("api", **env)
            return Realtime(streams=api, api=api)
        gateway = spawn("gateway", **env)
        if "REDIS_URL" in env:
            return Realtime(streams=gateway, api=spawn("api", **env), own_api=True)
        return Realtime(streams=gateway, api=request.getfixturevalue("publisher"))

    return make


@pytest.fixture(scope="session")
def rt_api(rt_stack: Callable[..., Realtime]) -> Realtime:
    """The session's streams for realtime tests (small replay pages, so paging is exercised)."""
    return rt_stack(**RT_ENV)


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10) as client:
        yield client


@pytest.fixture
def admin(token: Callable[..., str]) -> str:
    return token("ops-admin", admin=True)
