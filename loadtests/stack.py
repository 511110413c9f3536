"""A throwaway Draftwire stack for benchmarks: its own Postgres and Redis, migrated, with API
and worker processes; everything is stopped on exit. Loopback only."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from app.auth import issue
from app.devstack import PostgresServer, RedisServer, free_port, wait_for_port

SECRET = "bench-secret-0123456789abcdef-0123456789"  # noqa: S105 - throwaway


@dataclass
class Stack:
    root: Path
    env: dict[str, str]
    api_port: int
    worker_port: int
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def worker(self) -> str:
        return f"http://127.0.0.1:{self.worker_port}"

    def cpu(self) -> dict[str, float]:
        """CPU seconds used so far by the API and worker process trees."""
        return {"api": cpu_seconds(self.procs[0].pid), "worker": cpu_seconds(self.procs[1].pid)}

    def token(self, user: str, admin: bool = False) -> str:
        return issue(SECRET, user, admin=admin, ttl_seconds=7200)


@contextlib.contextmanager
def dependencies(prefix: str = "draftwire-bench-") -> Iterator[tuple[Path, PostgresServer, RedisServer]]:
    """A temporary directory (readable by the postgres OS user) with Postgres and Redis in it,
    stopped and removed on exit."""
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        root = Path(tmp)
        os.chmod(root, 0o755)
        pg = PostgresServer(root / "pg").start()
        redis = RedisServer(root / "redis").start()
        try:
            yield root, pg, redis
        finally:
            redis.stop()
            pg.stop("immediate")


@contextlib.contextmanager
def stack(**env: str) -> Iterator[Stack]:
    """Start Postgres, Redis, migrations, one API and one worker with ``env`` overrides."""
    with dependencies() as (root, pg, redis):
        try:
            api_port, worker_port = free_port(), free_port()
            full = {
                **os.environ,
                "DATABASE_URL": pg.url,
                "REDIS_URL": redis.url,
                "JWT_SECRET": SECRET,
                "DRAFTWIRE_ENV": "test",
                "LOG_LEVEL": "WARNING",
                "HOST": "127.0.0.1",
                "PORT": str(api_port),
                "WORKER_METRICS_PORT": str(worker_port),
                **env,
            }
            exe = str(Path(sys.executable).with_name("draftwire"))
            subprocess.run([exe, "migrate"], env=full, check=True, capture_output=True)
            s = Stack(root, full, api_port, worker_port)
            for kind in ("api", "worker"):
                log = (root / f"{kind}.log").open("ab")
                s.procs.append(subprocess.Popen([exe, kind], env=full, stdout=log, stderr=subprocess.STDOUT))
            wait_for_port(api_port, 30, s.procs[0])
            wait_for_port(worker_port, 30, s.procs[1])
            yield s
        finally:
            for proc in locals().get("s", Stack(root, {}, 0, 0)).procs:
                proc.terminate()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(35)


def cpu_seconds(pid: int) -> float:
    """User+system CPU of a process and all its descendants, from /proc (Linux)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    pending = [pid]
    while pending:
        current = pending.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        pending.extend(int(c) for c in children)
    return total


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]
