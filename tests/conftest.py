"""Test fixtures: throwaway PostgreSQL and Redis on free ports (or TEST_DATABASE_URL /
TEST_REDIS_URL), migrated once per session, and factories for real API and worker processes."""

from __future__ import annotations

import asyncio
import itertools
import os
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psycopg
import pytest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from redis.asyncio import Redis

from app.auth import issue
from app.db.migrate import migrate
from devstack.servers import PostgresServer, RedisServer
from tests.support.processes import TEST_SECRET, ServiceProcess

LIVE_FIXTURES = frozenset({
    "database_url", "redis_server", "redis_url", "migrated", "base_env", "spawn", "api", "worker", "redis",
    "owner_conn", "fresh_redis_url",
})
"""A test using any of these starts servers: it belongs to the live tier."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tiers: ``live`` for tests that start servers (by their fixtures, or marked by hand),
    ``fast`` for the rest; ``make test-fast`` runs ``-m fast``."""
    for item in items:
        uses = set(getattr(item, "fixturenames", ()))
        if item.get_closest_marker("live") is None and uses & LIVE_FIXTURES:
            item.add_marker(pytest.mark.live)
        if item.get_closest_marker("live") is None:
            item.add_marker(pytest.mark.fast)


def pytest_configure(config: pytest.Config) -> None:
    shared = os.environ.get("TEST_DATABASE_URL") or os.environ.get("TEST_REDIS_URL")
    if shared and config.getoption("numprocesses", None):
        raise pytest.UsageError("TEST_DATABASE_URL / TEST_REDIS_URL would be shared by every pytest-xdist worker "
                                "(their Redis databases and queues would collide): run in one process, "
                                "TEST_WORKERS=0 make test (or pytest -n 0).")


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """``make test`` (``-n 2 --dist loadscope``): pytest-xdist hands each worker whole folders of
    ``tests/`` (instead of whole modules), so a folder runs in one process, in order, with its own
    session Postgres and Redis, and ``security/test_zz_telemetry.py`` still reads the logs of
    every process its folder started. (xdist's own ``loadgroup`` cannot do this under pytest 9:
    it renames ``item._nodeid``, which pytest 9 no longer reads.)"""
    if config.getvalue("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class ByFolder(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            parts = nodeid.split("::", 1)[0].split("/")
            return parts[1] if len(parts) > 2 else "top"  # tests/<folder>/test_x.py

    return ByFolder(config, log)


@pytest.fixture(scope="session")
def workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="draftwire-test-") as d:
        os.chmod(d, 0o755)
        yield Path(d)


@pytest.fixture(scope="session")
def database_url(workdir: Path) -> Iterator[str]:
    if os.environ.get("TEST_DATABASE_URL"):
        yield os.environ["TEST_DATABASE_URL"]
        return
    server = PostgresServer(workdir / "pg").start()
    try:
        yield server.url
    finally:
        server.stop("immediate")


@pytest.fixture(scope="session")
def redis_server(workdir: Path) -> Iterator[RedisServer | None]:
    if os.environ.get("TEST_REDIS_URL"):
        yield None
        return
    server = RedisServer(workdir / "redis").start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def redis_url(redis_server: RedisServer | None) -> str:
    return os.environ.get("TEST_REDIS_URL") or redis_server.url  # type: ignore[union-attr]


_redis_dbs = itertools.count(1)  # database 0 is the shared session API/worker's


@pytest.fixture(scope="session")
def fresh_redis_url(redis_url: str) -> Callable[[], str]:
    """``fresh_redis_url()``: a Redis database no other test uses, so a test's own worker
    takes only its own jobs (the throwaway server has 64 databases)."""

    def make() -> str:
        return f"{redis_url.rsplit('/', 1)[0]}/{next(_redis_dbs)}"

    return make


@pytest.fixture(scope="session")
def migrated(database_url: str) -> str:
    asyncio.run(migrate(database_url, progress=None))
    return database_url


@pytest.fixture(scope="session")
def base_env(migrated: str, redis_url: str) -> dict[str, str]:
    """Environment for app processes: test dependencies, contract defaults otherwise."""
    return {
        "DATABASE_URL": migrated,
        "REDIS_URL": redis_url,
        "JWT_SECRET": TEST_SECRET,
        "DRAFTWIRE_ENV": "test",
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "INFO",
        "HOST": "127.0.0.1",
    }


@pytest.fixture
def token() -> Callable[..., str]:
    def make(user: str | None = None, *, admin: bool = False, ttl: float = 3600) -> str:
        return issue(TEST_SECRET, user or f"user-{uuid.uuid4().hex[:12]}", admin=admin, ttl_seconds=ttl)

    return make


@pytest.fixture
def user_id() -> str:
    return f"user-{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="session")
def spawn(workdir: Path, base_env: dict[str, str]) -> Iterator[Callable[..., ServiceProcess]]:
    """``spawn("api"|"worker", **env)``: a started process, stopped at the end of the session
    (tests that stop or kill theirs early may)."""
    started: list[ServiceProcess] = []

    def make(kind: str, **env: str) -> ServiceProcess:
        log = workdir / f"{kind}-{uuid.uuid4().hex[:8]}.log"
        proc = ServiceProcess(kind, {**base_env, **env}, log)
        started.append(proc)
        return proc.start()

    yield make
    # All at once: each drains on SIGTERM (sockets closed with 1001, jobs finished), and one by one
    # the end of the session took about a minute.
    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(ServiceProcess.stop, reversed(started)))


@pytest.fixture(scope="session")
def api(spawn: Callable[..., ServiceProcess]) -> ServiceProcess:
    """The shared API process, with the contract's defaults (30 saves/min/user)."""
    return spawn("api", AUTOSAVE_FLUSH_DELAY="300ms")


@pytest.fixture(scope="session")
def worker(spawn: Callable[..., ServiceProcess]) -> ServiceProcess:
    """The shared worker process."""
    return spawn("worker", AUTOSAVE_FLUSH_DELAY="300ms")


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
async def owner_conn(migrated: str) -> AsyncIterator[psycopg.AsyncConnection[tuple[object, ...]]]:
    """A connection as the schema owner (sees past nothing: RLS is forced even for owners)."""
    conn = await psycopg.AsyncConnection.connect(migrated, autocommit=True)
    yield conn
    await conn.close()


@pytest.fixture
def scratch(workdir: Path) -> Path:
    """A fresh directory the postgres OS user can reach (pytest's tmp_path is 0700 root)."""
    path = workdir / f"scratch-{uuid.uuid4().hex[:8]}"
    path.mkdir()
    return path


@pytest.fixture
def spans() -> InMemorySpanExporter:
    """Every span this process finishes from now on, kept in memory (the SDK's own exporter)."""
    from observability import tracing

    exporter = InMemorySpanExporter()
    tracing.configure("draftwire-test", SimpleSpanProcessor(exporter))
    return exporter
