"""Fixtures of the queue tests: their own Redis databases, so no other suite's worker takes
their jobs, and API/worker processes configured with short timeouts and the test-only jobs."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from redis.asyncio import Redis

from app.queue.names import QUEUES
from app.queue.redis_queue import DraftwireQueue
from app.queue.worker import job_defaults
from tests.autosave.conftest import auth, client, eventually
from tests.support.processes import DRAFTWIRE, ServiceProcess

__all__ = ("auth", "client", "eventually")

def queue_env(redis_url: str, **extra: str) -> dict[str, str]:
    """Short settings: 2 s task timeout, 3 attempts, test jobs on, no per-user save limit."""
    return {
        "REDIS_URL": redis_url,
        "DRAFTWIRE_TEST_JOBS": "1",
        "WORKER_TASK_TIMEOUT": "2s",
        "JOB_MAX_ATTEMPTS": "3",
        "AUTOSAVE_FLUSH_DELAY": "200ms",
        "AUTOSAVE_RATE_LIMIT_PER_MINUTE": "100000",
        "RATE_LIMIT_REQUESTS": "100000",
        **extra,
    }


@pytest.fixture(scope="session")
def shared_redis_url(fresh_redis_url: Callable[[], str]) -> str:
    return fresh_redis_url()


@pytest.fixture(scope="session")
def qapi(spawn: Callable[..., ServiceProcess], shared_redis_url: str) -> ServiceProcess:
    return spawn("api", **queue_env(shared_redis_url))


@pytest.fixture(scope="session")
def qworker(spawn: Callable[..., ServiceProcess], shared_redis_url: str) -> ServiceProcess:
    return spawn("worker", **queue_env(shared_redis_url))


@pytest.fixture
async def isolated_redis_url(fresh_redis_url: Callable[[], str]) -> AsyncIterator[str]:
    """A Redis database of its own, empty, for a test that starts and kills its own workers."""
    url = fresh_redis_url()
    client_ = Redis.from_url(url)
    await client_.flushdb()
    await client_.aclose()
    yield url


async def open_queues(url: str) -> tuple[Redis, dict[str, DraftwireQueue]]:
    redis = Redis.from_url(url)
    queues = {name: DraftwireQueue(redis, name=name) for name in QUEUES}
    for queue in queues.values():
        await queue.connect()
    return redis, queues


@pytest.fixture
async def shared_queues(shared_redis_url: str) -> AsyncIterator[dict[str, DraftwireQueue]]:
    redis, queues = await open_queues(shared_redis_url)
    yield queues
    await redis.aclose()


def new_key() -> str:
    return f"test:{uuid.uuid4()}"


async def enqueue(queue: DraftwireQueue, function: str, *, timeout: float = 2, attempts: int = 3, **kwargs: Any) -> str:
    """Enqueue a test job as the API would (contract defaults from the given settings)."""
    key = new_key()
    job = await queue.enqueue(function, key=key, **job_defaults(timeout, attempts), **kwargs)
    assert job is not None
    return key


async def job_status(queue: DraftwireQueue, key: str) -> str | None:
    job = await queue.job(key)
    return job.status.value if job else None


def run_cli(redis_url: str, base_env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **base_env, "REDIS_URL": redis_url}
    return subprocess.run([DRAFTWIRE, *args], env=env, capture_output=True, text=True, timeout=60, check=False)


def logged(proc: ServiceProcess, msg: str, **match: Any) -> list[dict[str, Any]]:
    """The process's log lines with this ``msg`` (and these field values)."""
    return [
        line for line in proc.logs() if line.get("msg") == msg and all(line.get(k) == v for k, v in match.items())
    ]
