"""Job records: who owns a job, and what ``GET /api/jobs/{jobId}`` says about it.

Jobs with a record (builds: one row in ``jobs`` per job, so ownership survives any API process
and any Redis loss) and jobs whose id names their owner (the autosave flush
``draft:<userId>:<draftId>``, registered by autosave with :meth:`JobStore.register_unrecorded`).
SAQ's record in Redis has the live state; the ``jobs`` row the last state the handler wrote,
used once Redis has forgotten the job.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from saq.job import Job

from app.db import Database
from app.errors import not_found
from app.events import EventReader, OwnerLookup, utc_iso_ms
from app.queue.names import FINISHED_STATES, JobState, job_state
from app.queue.redis_queue import DraftwireQueue, last_line


@dataclass(frozen=True)
class Unrecorded:
    """A kind of job without a ``jobs`` row: its id prefix, type, queue and owner lookup."""

    type: str
    queue: str
    owner: OwnerLookup


class JobStore:
    """The ``jobs`` table: written as the owner (RLS), read as the owner or via ``job_owner()``."""

    def __init__(self, db: Database, queues: dict[str, DraftwireQueue], reader: EventReader) -> None:
        self.db = db
        self.queues = queues
        self.reader = reader
        self.unrecorded: dict[str, Unrecorded] = {}

    def register_unrecorded(self, prefix: str, kind: Unrecorded) -> None:
        self.unrecorded[prefix] = kind

    async def create(self, user_id: str, job_id: str, *, type_: str, queue: str, draft_id: str) -> None:
        async with self.db.user_tx(user_id, "jobs.create") as conn:
            await conn.execute(
                "INSERT INTO jobs (id, owner_user_id, type, queue, draft_id)"
                " VALUES (%s, current_setting('app.current_user_id'), %s, %s, %s)",
                (job_id, type_, queue, draft_id),
            )

    async def delete(self, user_id: str, job_id: str) -> None:
        async with self.db.user_tx(user_id, "jobs.delete") as conn:
            await conn.execute("DELETE FROM jobs WHERE id = %s", (job_id,))

    async def record(
        self, user_id: str, job_id: str, state: JobState, error: str | None = None, *, type_: str, queue: str
    ) -> None:
        """The handler's view of its job; a missing row (purged, or enqueued by hand) is recreated."""
        async with self.db.user_tx(user_id, "jobs.record") as conn:
            await conn.execute(
                "INSERT INTO jobs (id, owner_user_id, type, queue, status, error)"
                " VALUES (%s, current_setting('app.current_user_id'), %s, %s, %s, %s)"
                " ON CONFLICT (id) DO UPDATE SET status = excluded.status, error = excluded.error,"
                " updated_at = now()",
                (job_id, type_, queue, state.value, error),
            )

    async def owner(self, job_id: str) -> str | None:
        async with self.db.tx("jobs.owner") as conn:
            cur = await conn.execute("SELECT job_owner(%s) AS owner", (job_id,))
            row = await cur.fetchone()
        return row["owner"] if row else None

    async def describe(self, user_id: str, job_id: str) -> dict[str, Any]:
        """The contract's job view; 404 for unknown ids and for other users' jobs alike."""
        async with self.db.user_tx(user_id, "jobs.get") as conn:
            cur = await conn.execute(
                "SELECT type, queue, status, error, created_at, updated_at FROM jobs WHERE id = %s", (job_id,)
            )
            row = await cur.fetchone()
        if row is not None:
            job = await self.queues[row["queue"]].job(job_id) if row["queue"] in self.queues else None
            return _view(job_id, row["type"], job, row, await self.reader.head(f"job:{job_id}"))
        for prefix, kind in self.unrecorded.items():
            if job_id.startswith(prefix) and await kind.owner(job_id) == user_id:
                job = await self.queues[kind.queue].job(job_id)
                if job is not None:
                    return _view(job_id, kind.type, job, None, await self.reader.head(f"job:{job_id}"))
        raise not_found("job")


def _view(job_id: str, type_: str, job: Job | None, row: dict[str, Any] | None, last_seq: int) -> dict[str, Any]:
    if job is not None:
        state = job_state(job.status.value, job.attempts)
        error = last_line(job.error) if state in (JobState.RETRYING, JobState.FAILED) else None
        created = row["created_at"] if row else _from_ms(job.queued)
        updated = _from_ms(max(job.queued, job.started, job.touched, job.completed))
        attempts, progress = job.attempts, job.progress
    else:  # Redis forgot the job (expired or lost): the handler's last word
        assert row is not None
        state = JobState(row["status"])
        error, created, updated = row["error"], row["created_at"], row["updated_at"]
        attempts, progress = 0, 1.0 if state in FINISHED_STATES else 0.0
    return {
        "jobId": job_id,
        "type": type_,
        "status": state.value,
        "attempts": attempts,
        "progress": progress,
        "lastSeq": last_seq,
        "error": error,
        "createdAt": utc_iso_ms(created),
        "updatedAt": utc_iso_ms(updated),
    }


def _from_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)
