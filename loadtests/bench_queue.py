"""Queue benchmark: one ``draftwire worker`` process (metrics, tracing and logging on) against
throwaway Postgres and Redis on this machine.

    .venv/bin/python -m loadtests.bench_queue [--jobs 20000] [--idle 500] [--drafts 10000]

1. **Throughput**: ``--jobs`` no-op jobs are enqueued first, then the worker (concurrency 10)
   is started; jobs/s = jobs / (last completion - first start), from SAQ's own job records.
2. **Enqueue-to-start on an idle worker**: ``--idle`` no-op jobs, one at a time, 10 ms apart;
   p50/p99 of ``started - queued`` (SAQ stamps both in ms).
3. **Autosave flush**: ``--drafts`` distinct drafts (100 users) saved to Redis and their flush
   jobs enqueued, then a fresh worker started; drafts/s until every draft is in Postgres.

The no-op job is the test-only ``noop`` (``DRAFTWIRE_TEST_JOBS=1``, see app/queue/testing.py).
Prints one JSON document.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
import uuid
from pathlib import Path
from typing import Any

import uvloop
from redis.asyncio import Redis

from app.autosave.service import AutosaveService, SaveRequest
from app.autosave.store import DraftStore
from app.config import Settings
from app.db import Database
from app.db.migrate import migrate
from app.queue.redis_queue import DraftwireQueue
from app.queue.worker import job_defaults
from app.redisconn import Pipelined
from devstack.processes import ServiceProcess, cpu_seconds
from devstack.stack import SECRET, dependencies
from devstack.stats import percentile
from observability import logging as obs_logging

BUILD = "draft-build"


def start_worker(env: dict[str, str], root: Path) -> ServiceProcess:
    return ServiceProcess("worker", env, root / "worker.log").start()


def stop(worker: ServiceProcess) -> None:
    worker.stop()


async def enqueue_noops(queue: DraftwireQueue, n: int) -> list[str]:
    keys = [f"bench:{uuid.uuid4()}" for _ in range(n)]
    defaults = job_defaults(15, 5)
    for i in range(0, n, 500):
        await asyncio.gather(*(queue.enqueue("noop", key=k, **defaults) for k in keys[i : i + 500]))
    return keys


async def records(queue: DraftwireQueue, keys: list[str]) -> list[Any]:
    out: list[Any] = []
    for i in range(0, len(keys), 1000):
        out += await queue.jobs(keys[i : i + 1000])
    return out


async def throughput(queue: DraftwireQueue, env: dict[str, str], root: Path, n: int) -> dict[str, Any]:
    keys = await enqueue_noops(queue, n)
    worker = start_worker(env, root)
    cpu0 = cpu_seconds(worker.pid)
    deadline = time.monotonic() + 300
    while (await queue.depth())["completed"] < n and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    cpu = cpu_seconds(worker.pid) - cpu0
    jobs = [j for j in await records(queue, keys) if j is not None]
    done = [j for j in jobs if j.status.value == "complete"]
    span_s = (max(j.completed for j in done) - min(j.started for j in done)) / 1000
    return {"worker": worker, "jobs": n, "completed": len(done), "seconds": round(span_s, 3),
            "jobs_per_s": round(len(done) / span_s), "worker_cpu_s": round(cpu, 2)}


async def idle_latency(queue: DraftwireQueue, n: int) -> dict[str, Any]:
    keys = []
    for _ in range(n):
        keys += await enqueue_noops(queue, 1)
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.5)
    waits = [j.started - j.queued for j in await records(queue, keys) if j is not None and j.started]
    return {"jobs": n, "started": len(waits), "p50_ms": percentile(waits, 50), "p99_ms": percentile(waits, 99),
            "max_ms": max(waits)}


async def autosave_flush(redis: Redis, env: dict[str, str], root: Path, drafts: int) -> dict[str, Any]:
    """Saves go through the API's own service (validation aside), so jobs are shaped as in production."""
    store = DraftStore(redis, Pipelined(env["REDIS_URL"]))
    queue = DraftwireQueue(redis, name="draft-autosave")
    await queue.connect()
    settings = Settings(env="test", database_url=env["DATABASE_URL"], redis_url=env["REDIS_URL"], jwt_secret=SECRET,
                        autosave_flush_delay=0, autosave_rate_limit_per_minute=10**9)
    db = Database(url=settings.database_url, statement_timeout=5)
    service = AutosaveService(settings=settings, store=store, db=db, queue=queue)
    payload = json.dumps({"intro": "x" * 120, "goals": ["save", "flush"], "n": 1})
    request = SaveRequest(None, "bench", payload, len(payload), None)
    for i in range(0, drafts, 500):
        await asyncio.gather(*(service.save(f"bench-{j % 100}", request) for j in range(i, min(drafts, i + 500))))
    worker = start_worker(env, root)
    first = last = None
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        pending = await store.pending()
        if first is None and pending < drafts:
            first = time.monotonic()
        if pending == 0:
            last = time.monotonic()
            break
        await asyncio.sleep(0.02)
    stop(worker)
    assert first is not None and last is not None, "flush did not finish"
    return {"drafts": drafts, "seconds": round(last - first, 3), "drafts_per_s": round(drafts / (last - first))}


async def main(args: argparse.Namespace) -> dict[str, Any]:
    obs_logging.configure("WARNING")  # the driver's own saves would log a line each
    with dependencies("draftwire-bench-queue-") as (root, pg, rs):
        await migrate(pg.url, progress=None)
        env = {**os.environ, "DATABASE_URL": pg.url, "REDIS_URL": rs.url, "JWT_SECRET": SECRET,
               "DRAFTWIRE_ENV": "test", "LOG_LEVEL": "INFO", "DRAFTWIRE_TEST_JOBS": "1",
               "WORKER_CONCURRENCY": "10", "AUTOSAVE_FLUSH_DELAY": "1s"}
        redis = Redis.from_url(rs.url)
        queue = DraftwireQueue(redis, name=BUILD)
        await queue.connect()
        result = await throughput(queue, env, root, args.jobs)
        worker = result.pop("worker")
        idle = await idle_latency(queue, args.idle)
        stop(worker)
        flush = await autosave_flush(redis, env, root, args.drafts)
        await redis.aclose()
        return {"noop_throughput": result, "idle_enqueue_to_start": idle, "autosave_flush": flush}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=20000)
    parser.add_argument("--idle", type=int, default=500)
    parser.add_argument("--drafts", type=int, default=10000)
    print(json.dumps(uvloop.run(main(parser.parse_args())), indent=2))
