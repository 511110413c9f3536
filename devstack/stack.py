"""A throwaway Draftwire stack: its own Postgres and Redis in a temporary directory, migrated,
with API and worker processes; everything is stopped and removed on exit. Loopback only. Used
by the load tests and the benchmarks (``make up`` keeps its data in ``.data`` instead)."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from devstack.processes import ServiceProcess, migrate
from devstack.servers import PostgresServer, RedisServer

SECRET = "bench-secret-0123456789abcdef-0123456789"  # noqa: S105 - throwaway, loopback stacks only


@dataclass
class Stack:
    root: Path
    env: dict[str, str]
    processes: dict[str, ServiceProcess] = field(default_factory=dict)

    @property
    def api(self) -> str:
        return self.processes["api"].url

    @property
    def worker(self) -> str:
        return self.processes["worker"].url

    def cpu(self) -> dict[str, float]:
        """CPU seconds used so far by each process tree, by role."""
        return {name: proc.cpu_seconds() for name, proc in self.processes.items()}

    def token(self, user: str, admin: bool = False) -> str:
        from app.auth import issue

        return issue(SECRET, user, admin=admin, ttl_seconds=7200)


@contextlib.contextmanager
def dependencies(prefix: str = "draftwire-bench-") -> Iterator[tuple[Path, PostgresServer, RedisServer]]:
    """A temporary directory (readable by the postgres OS user) with Postgres and Redis in it,
    stopped and removed on exit."""
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        root = Path(tmp)
        os.chmod(root, 0o755)  # noqa: S103 - initdb runs as the postgres OS user
        pg = PostgresServer(root / "pg").start()
        redis = RedisServer(root / "redis").start()
        try:
            yield root, pg, redis
        finally:
            redis.stop()
            pg.stop("immediate")


def stack_env(pg: PostgresServer, redis: RedisServer, **env: str) -> dict[str, str]:
    return {
        "DATABASE_URL": pg.url,
        "REDIS_URL": redis.url,
        "JWT_SECRET": SECRET,
        "DRAFTWIRE_ENV": "test",
        "LOG_LEVEL": "WARNING",
        "HOST": "127.0.0.1",
        **env,
    }


@contextlib.contextmanager
def stack(roles: tuple[str, ...] = ("api", "worker"), **env: str) -> Iterator[Stack]:
    """Start Postgres, Redis, migrations and one process per role with ``env`` overrides."""
    with dependencies() as (root, pg, redis):
        full = stack_env(pg, redis, **env)
        migrate(full)
        running = Stack(root, full)
        try:
            for role in roles:
                running.processes[role] = ServiceProcess(role, full, root / f"{role}.log").start()
            yield running
        finally:
            for proc in reversed(running.processes.values()):
                proc.stop()
