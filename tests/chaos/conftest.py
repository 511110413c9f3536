"""The chaos suite: real processes killed and restarted under load, with nothing lost.

Every scenario runs in a short form (``make test``) and a full form (``make chaos``, which sets
``CHAOS_FULL=1``); :data:`FULL` picks the sizes. Each writes its figures with :func:`record` to
``.data/chaos/<form>.jsonl`` for docs/RELIABILITY.md. Each test has its own Postgres and Redis
(AOF on, as in compose), so it may stop or kill them.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import psycopg
import pytest

from devstack.processes import ServiceProcess, migrate
from devstack.servers import PostgresServer, RedisServer
from devstack.stack import stack_env
from tests.realtime.support import Client
from tests.support.processes import TEST_SECRET

FULL = os.environ.get("CHAOS_FULL") == "1"
FORM = "full" if FULL else "short"
REPORT_DIR = Path(__file__).resolve().parents[2] / ".data" / "chaos"
CHAOS_ENV = {
    "LOG_FORMAT": "json",
    "LOG_LEVEL": "INFO",
    "JWT_SECRET": TEST_SECRET,
    "AUTOSAVE_FLUSH_DELAY": "300ms",
    # The scenarios drive far more saves and publishes per user than a person does: the limits
    # are not what is under test here (tests/autosave covers them).
    "AUTOSAVE_RATE_LIMIT_PER_MINUTE": "1000000",
    "RATE_LIMIT_REQUESTS": "1000000",
    "REALTIME_MAX_PER_CLIENT": "1000",
    "REALTIME_MAX_CONNECTIONS": "1000",
}

T = TypeVar("T")


def record(scenario: str, **figures: Any) -> None:
    """Append one scenario's measured figures to the report of this form."""
    REPORT_DIR.mkdir(parents=True, exist_ok=True)
    line = {"scenario": scenario, "form": FORM, "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **figures}
    with (REPORT_DIR / f"{FORM}.jsonl").open("a") as out:
        out.write(json.dumps(line) + "\n")
    print(f"chaos {scenario}: {figures}", flush=True)


async def eventually(what: str, probe: Callable[[], Awaitable[T]], done: Callable[[T], bool],
                     within: float, every: float = 0.2) -> T:
    """Poll ``probe`` until ``done(value)``; the last value. Fails naming ``what``."""
    deadline = time.monotonic() + within
    while True:
        value = await probe()
        if done(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within:g} s waiting for {what}; last: {str(value)[:300]}")
        await asyncio.sleep(every)


@dataclass
class ChaosStack:
    """A Postgres, a Redis (AOF) and our processes on them, all of this test's own."""

    root: Path
    pg: PostgresServer
    redis: RedisServer
    env: dict[str, str]
    procs: list[ServiceProcess] = field(default_factory=list)

    def spawn(self, kind: str, **env: str) -> ServiceProcess:
        log = self.root / f"{kind}-{uuid.uuid4().hex[:6]}.log"
        proc = ServiceProcess(kind, {**self.env, **env}, log)
        self.procs.append(proc)
        return proc.start()

    def token(self, user: str, admin: bool = False) -> str:
        from app.auth import issue

        return issue(TEST_SECRET, user, admin=admin, ttl_seconds=7200)

    def headers(self, user: str, admin: bool = False) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(user, admin)}"}

    async def subscribers(self, base: str, n: int, channel: str) -> list[Client]:
        """``n`` sockets to ``base``, each as an admin user of its own, subscribed to ``channel``."""
        clients = [await Client.open(base, self.token(f"chaos-sub-{i}", admin=True)) for i in range(n)]
        for c in clients:
            await c.subscribe(channel)
        return clients

    async def stored(self, ids: list[str]) -> dict[str, int]:
        """Version in spec_drafts of each of ``ids`` that has a row (as the schema owner)."""
        async with await psycopg.AsyncConnection.connect(self.pg.url, autocommit=True) as conn:
            cur = await conn.execute("SELECT id::text, version FROM spec_drafts WHERE id = ANY(%s::uuid[])", (ids,))
            return {r[0]: int(r[1]) for r in await cur.fetchall()}

    async def written_versions(self, ids: list[str]) -> dict[str, list[int]]:
        """The versions each draft's draft.saved events recorded, in seq order."""
        async with await psycopg.AsyncConnection.connect(self.pg.url, autocommit=True) as conn:
            cur = await conn.execute(
                "SELECT substr(channel, 7), (data->>'version')::bigint FROM channel_events "
                "WHERE channel = ANY(%s) ORDER BY channel, seq", ([f"draft:{i}" for i in ids],))
            out: dict[str, list[int]] = {}
            for draft, version in await cur.fetchall():
                out.setdefault(draft, []).append(int(version))
            return out


@pytest.fixture
def chaos(workdir: Path) -> Iterator[ChaosStack]:
    root = workdir / f"chaos-{uuid.uuid4().hex[:8]}"
    root.mkdir()
    os.chmod(root, 0o755)
    pg = PostgresServer(root / "pg").start()
    redis = RedisServer(root / "redis", aof=True).start()
    env = {**stack_env(pg, redis), **CHAOS_ENV}
    migrate(env)
    stack = ChaosStack(root, pg, redis, env)
    try:
        yield stack
    finally:
        for proc in reversed(stack.procs):
            proc.stop(signal.SIGKILL)  # a throwaway stack: nothing left to verify
        redis.stop()
        pg.stop("immediate")


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    limits = httpx.Limits(max_connections=400, max_keepalive_connections=400)
    async with httpx.AsyncClient(timeout=20, limits=limits) as client:
        yield client


@dataclass
class Saver:
    """Autosaves of many users, remembering the last accepted version of every draft."""

    stack: ChaosStack
    http: httpx.AsyncClient
    latest: dict[str, int] = field(default_factory=dict)
    refused: dict[str, int] = field(default_factory=dict)

    async def save(self, base: str, user: str, draft_id: str | None = None) -> httpx.Response:
        body: dict[str, Any] = {"title": f"chaos {user}", "payload": {"t": time.time(), "user": user}}
        if draft_id:
            body["draftId"] = draft_id
        r = await self.http.post(f"{base}/api/autosave", json=body, headers=self.stack.headers(user))
        if r.status_code == 202:
            got = r.json()
            self.latest[got["draftId"]] = max(self.latest.get(got["draftId"], 0), int(got["version"]))
        else:
            key = f"{r.status_code} {r.json().get('error', '') if r.content else ''}"
            self.refused[key] = self.refused.get(key, 0) + 1
        return r

    async def user_loop(self, base: Callable[[], str], user: str, saves: int, drafts: int, spacing: float) -> None:
        """``saves`` saves spread over ``drafts`` drafts of ``user``, ``spacing`` s apart."""
        ids: list[str | None] = [None] * drafts
        for i in range(saves):
            slot = i % drafts
            with_id = ids[slot]
            try:
                r = await self.save(base(), user, with_id)
            except httpx.HTTPError as exc:
                self.refused[type(exc).__name__] = self.refused.get(type(exc).__name__, 0) + 1
                r = None
            if r is not None and r.status_code == 202 and with_id is None:
                ids[slot] = r.json()["draftId"]
            await asyncio.sleep(spacing)

    async def all_persisted(self, within: float) -> float:
        """Wait until every draft is in Postgres at its last accepted version; the seconds it took."""
        start = time.monotonic()
        ids = list(self.latest)

        async def behind() -> int:
            stored = await self.stack.stored(ids)
            return sum(stored.get(i, 0) < v for i, v in self.latest.items())

        await eventually("every accepted draft in Postgres", behind, lambda n: n == 0, within, every=0.5)
        return time.monotonic() - start

    async def losses(self) -> tuple[int, int]:
        """(drafts behind their last accepted version, drafts whose writes went backwards)."""
        ids = list(self.latest)
        stored = await self.stack.stored(ids)
        lost = sum(stored.get(i, 0) < v for i, v in self.latest.items())
        written = await self.stack.written_versions(ids)
        rolled_back = sum(any(b <= a for a, b in itertools.pairwise(vs)) for vs in written.values())
        return lost, rolled_back


@pytest.fixture
def saver(chaos: ChaosStack, http: httpx.AsyncClient) -> Saver:
    return Saver(chaos, http)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The full forms run for minutes: lift the suite's 120 s per-test timeout for them."""
    for item in items:
        if "tests/chaos/" in str(item.path) and FULL:
            item.add_marker(pytest.mark.timeout(900))
