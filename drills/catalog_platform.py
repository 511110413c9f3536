"""Drills of the platform alerts: dependencies, HTTP, queue and workers, backup."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

from devstack.processes import DRAFTWIRE, migrate
from drills.faults import Background, enqueue, fresh_user, redis_command, sql
from drills.live import Live
from drills.model import Drill, Explained

# --- dependencies -------------------------------------------------------------------------------


async def stop_redis(live: Live, bg: Background) -> None:
    live.redis.stop()


async def start_redis(live: Live, bg: Background) -> None:
    await bg.stop()
    live.redis.start()  # same port, same directory: it reloads its AOF


async def stop_postgres(live: Live, bg: Background) -> None:
    await asyncio.to_thread(live.pg.stop, "fast")


async def start_postgres(live: Live, bg: Background) -> None:
    await bg.stop()
    await asyncio.to_thread(live.pg.start)


async def deploy_without_migrations(live: Live, bg: Background) -> None:
    """A release whose newest migration was not run: its objects and its schema_migrations row
    are absent when a new API process starts."""
    await sql(live, "DROP FUNCTION IF EXISTS purge_finished_jobs(timestamptz), job_owner(text)")
    await sql(live, "DROP TABLE IF EXISTS draft_builds, jobs CASCADE")
    await sql(live, "DELETE FROM schema_migrations WHERE version = (SELECT max(version) FROM schema_migrations)")
    await asyncio.to_thread(live.api2.stop)
    await asyncio.to_thread(live.api2.start)


async def run_migrate(live: Live, bg: Background) -> None:
    await asyncio.to_thread(migrate, live.env)


# --- HTTP ---------------------------------------------------------------------------------------


async def redis_down_under_saves(live: Live, bg: Background) -> None:
    bg.every(0.05, lambda: live.save(fresh_user()))
    live.redis.stop()


async def flood_one_user(live: Live, bg: Background) -> None:
    user = fresh_user()
    bg.every(0.15, lambda: live.save(user))


async def stop_flood(live: Live, bg: Background) -> None:
    await bg.stop()


async def kill_api2(live: Live, bg: Background) -> None:
    live.api2.kill()


async def start_api2(live: Live, bg: Background) -> None:
    await asyncio.to_thread(live.api2.start)


async def kill_gateway(live: Live, bg: Background) -> None:
    live.gateway.kill()


async def start_gateway(live: Live, bg: Background) -> None:
    await asyncio.to_thread(live.gateway.start)


# --- queue --------------------------------------------------------------------------------------


async def stop_worker_and_enqueue(live: Live, bg: Background) -> None:
    await asyncio.to_thread(live.worker.stop)
    await enqueue(live, "noop", 150)


async def stop_worker_keep_enqueueing(live: Live, bg: Background) -> None:
    await asyncio.to_thread(live.worker.stop)
    bg.every(0.5, lambda: enqueue(live, "noop", 1))


async def start_worker(live: Live, bg: Background) -> None:
    await bg.stop()
    await asyncio.to_thread(live.worker.start)


GATE = "drill-dependency"


async def failing_dependency(live: Live, bg: Background) -> None:
    """Build jobs that need a dependency which refuses them (the test-only gated job)."""
    await redis_command(live, "DEL", f"dwtest:allow:{GATE}")
    bg.every(0.5, lambda: enqueue(live, "fail_unless_allowed", 2, attempts=20, gate=GATE))


async def fix_dependency(live: Live, bg: Background) -> None:
    await bg.stop()
    await redis_command(live, "SET", f"dwtest:allow:{GATE}", "1")


DEAD_GATE = "drill-dead-letter"


async def dead_letter(live: Live, bg: Background) -> None:
    await redis_command(live, "DEL", f"dwtest:allow:{DEAD_GATE}")
    bg.dead = await enqueue(live, "fail_unless_allowed", 1, attempts=1, gate=DEAD_GATE)  # type: ignore[attr-defined]


async def retry_dead_letter(live: Live, bg: Background) -> None:
    """Runbook step 1: the transient cause is over, retry the job through the admin API."""
    await redis_command(live, "SET", f"dwtest:allow:{DEAD_GATE}", "1")
    for key in bg.dead:  # type: ignore[attr-defined]
        job_id = key.removeprefix("saq:job:draft-build:")
        r = await live.http.post(f"{live.api.url}/api/admin/queues/draft-build/failed/{job_id}/retry",
                                 headers=live.admin_headers())
        r.raise_for_status()


async def kill_worker(live: Live, bg: Background) -> None:
    live.worker.kill()


# --- backup -------------------------------------------------------------------------------------


async def only_an_old_dump(live: Live, bg: Background) -> None:
    """What a worker sees the day after the nightly run failed: its newest dump is 27 h old.
    The worker is restarted onto that directory (it reads the newest dump's time at start)."""
    await asyncio.to_thread(_leave_old_dump, Path(live.env["BACKUP_DIR"]), 27 * 3600)
    await asyncio.to_thread(live.worker.stop)
    await asyncio.to_thread(live.worker.start)


def _leave_old_dump(folder: Path, age_s: float) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("draftwire-*.dump"):
        old.unlink()
    stamp = datetime.fromtimestamp(time.time() - age_s, UTC).strftime("%Y%m%dT%H%M%SZ")
    (folder / f"draftwire-{stamp}.dump").write_bytes(b"PGDMP drill placeholder")


async def take_backup_and_restart(live: Live, bg: Background) -> None:
    """Runbook step 1, take a backup now (``draftwire backup``); a worker restart then picks the
    new dump's time up (see the runbook's Verify)."""
    done = await asyncio.to_thread(subprocess.run, [DRAFTWIRE, "backup"], env={**os.environ, **live.env},
                                   capture_output=True, check=False)
    if done.returncode:
        raise RuntimeError(f"draftwire backup failed: {done.stderr.decode()[-400:]}")
    await asyncio.to_thread(live.worker.stop)
    await asyncio.to_thread(live.worker.start)


def older_than_26h(output: str) -> bool:
    """Whether a promq line shows a backup timestamp more than 26 h in the past."""
    stamps = [float(v) for v in re.findall(r"\} (1[0-9]{9}(?:\.[0-9]+)?)$", output, re.M)]
    return any(time.time() - s > 26 * 3600 for s in stamps)


DRILLS = [
    Drill("RedisDown", "dependencies", "Redis stopped", "1. start Redis again (it reloads its AOF)",
          stop_redis, start_redis, r"redis ping failed|\} 0$", quick=True),
    Drill("DatabaseDown", "dependencies", "Postgres stopped (pg_ctl stop -m fast)", "1. start Postgres again",
          stop_postgres, start_postgres, r"database ping failed|\} 0$"),
    Drill("APINotReady", "dependencies",
          "api-2 restarted on a schema missing its newest migration (tables dropped, row deleted)",
          "1. run draftwire migrate; /readyz recovers without a restart",
          deploy_without_migrations, run_migrate, r"migrations pending"),
    Drill("APIHighErrorRate", "http", "Redis stopped under autosave traffic: POST /api/autosave answers 503",
          "1. /readyz names redis: RedisDown step 1, start Redis",
          redis_down_under_saves, start_redis, r'"status_code":"503"'),
    Drill("APIRateLimitSpike", "http", "one user saving ~6/s, far past 30/min", "1. stop the runaway client",
          flood_one_user, stop_flood, r"rate_limited|autosave", quick=True),
    Drill("APIInstanceDown", "http", "api-2 SIGKILLed", "3. restart api-2",
          kill_api2, start_api2, r"\} 0$", process_down=True),
    Drill("GatewayInstanceDown", "realtime", "the gateway process SIGKILLed", "2./3. start the gateway again",
          kill_gateway, start_gateway, r"\} 0$", process_down=True),
    Drill("QueueBacklogHigh", "queue", "worker stopped, 150 build jobs enqueued",
          "1. done rate 0: QueueWorkersStalled -> WorkerInstanceDown, start the worker",
          stop_worker_and_enqueue, start_worker, r'"waiting": 1[0-9][0-9]', process_down=True),
    Drill("QueueWorkersStalled", "queue", "worker stopped, a build job enqueued every 0.5 s",
          "1. workers down: WorkerInstanceDown, start the worker",
          stop_worker_keep_enqueueing, start_worker, r'"waiting": [1-9]', process_down=True),
    Drill("JobRetryStorm", "queue", "build jobs whose dependency refuses them, 4 a second, 20 attempts each",
          "1. one error for every job: fix the dependency (open the gate)",
          failing_dependency, fix_dependency, r"gate drill-dependency is closed"),
    Drill("JobFailedPermanently", "queue", "a build job with 1 attempt whose dependency refuses it",
          "1. transient cause over: retry the job (admin API)",
          dead_letter, retry_dead_letter, r'"draft-build": 1|job_failed_permanently', quick=True),
    Drill("WorkerInstanceDown", "queue", "worker SIGKILLed", "3. restart the worker",
          kill_worker, start_worker, r"\} 0$", process_down=True),
    Drill("BackupTooOld", "backup", "the newest dump is 27 h old when the worker starts (last night's run missing)",
          "1. take a backup now (draftwire backup), restart a worker so it reads the new dump's time",
          only_an_old_dump, take_backup_and_restart, older_than_26h),
]

EXPLAINED: list[Explained] = []
