"""The ``maintenance`` queue's nightly jobs (02:00 UTC, one run per slot across all workers):

- ``maintenance``: delete ``channel_events`` older than ``EVENT_RETENTION_DAYS`` (in batches, so
  no statement runs long) and finished job records older than 7 days (``jobs`` rows, and the
  queues' completed-job indexes; SAQ's records expire on their own). ``channel_heads`` stay:
  a channel's seq must never restart while events may still come.
- ``backup``: ``pg_dump`` (see :mod:`app.maintenance.backup`), a job of its own in the same slot
  with a longer timeout, so a slow dump never holds up retention.

``DRAFTWIRE_MAINTENANCE_CRON`` / ``DRAFTWIRE_BACKUP_CRON`` (settings ``maintenance_cron`` and
``backup_cron``) override the schedules. Tests use them; operators normally leave them alone.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

from app.config import Settings
from app.db import Database
from app.maintenance.backup import backup_and_record
from app.queue.redis_queue import DraftwireQueue
from observability.logging import get_logger

log = get_logger(__name__)

JOB_RECORD_DAYS = 7
"""Finished job records are kept this long (contract)."""
DELETE_BATCH = 5000
BACKUP_TIMEOUT_S = 3600
"""pg_dump of a large database outlives WORKER_TASK_TIMEOUT; it gets an hour."""


async def delete_old_events(db: Database, before: datetime) -> int:
    deleted = 0
    while True:
        async with db.tx("maintenance.events") as conn:
            cur = await conn.execute(
                "DELETE FROM channel_events WHERE ctid IN"
                " (SELECT ctid FROM channel_events WHERE created_at < %s LIMIT %s)",
                (before, DELETE_BATCH),
            )
            deleted += cur.rowcount
        if cur.rowcount < DELETE_BATCH:
            return deleted


async def delete_old_jobs(db: Database, queues: dict[str, DraftwireQueue], before: datetime) -> tuple[int, int]:
    async with db.tx("maintenance.jobs") as conn:
        cur = await conn.execute("SELECT purge_finished_jobs(%s) AS n", (before,))
        row = await cur.fetchone()
    trimmed = 0
    for queue in queues.values():
        trimmed += await queue.trim_completed(before.timestamp())
    return int(row["n"] if row else 0), trimmed


def maintenance_handlers(db: Database, queues: dict[str, DraftwireQueue], settings: Settings) -> dict[str, Any]:
    """The job functions by name, bound to this process's clients."""

    async def maintenance(ctx: dict[str, Any]) -> dict[str, int]:
        start = time.monotonic()
        now = datetime.now(UTC)
        events = await delete_old_events(db, now - timedelta(days=settings.event_retention_days))
        jobs, trimmed = await delete_old_jobs(db, queues, now - timedelta(days=JOB_RECORD_DAYS))
        log.info(
            "maintenance_completed",
            job_id=ctx["job"].key,
            queue="maintenance",
            events_deleted=events,
            jobs_deleted=jobs,
            index_trimmed=trimmed,
            latency_ms=round((time.monotonic() - start) * 1000),
        )
        return {"eventsDeleted": events, "jobsDeleted": jobs, "indexTrimmed": trimmed}

    async def backup(ctx: dict[str, Any]) -> dict[str, Any]:
        result = await backup_and_record(settings.database_url, settings.backup_dir, settings.backup_retention_days)
        return {"file": result.path.name, "bytes": result.bytes}

    return {"maintenance": maintenance, "backup": backup}
