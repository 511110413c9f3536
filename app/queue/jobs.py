"""Job records: who owns a job, and what ``GET /api/jobs/{jobId}`` says about it.

Two kinds of job ids reach users: ``build:<uuid>`` (one row in ``jobs`` per build, so ownership
survives any API process and any Redis loss) and the autosave flush ``draft:<userId>:<draftId>``
(the owner is in the id). SAQ's record in Redis has the live state; the ``jobs`` row the last
state the handler wrote, used once Redis has forgotten the job.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from saq.job import Job

from app.db import Conn, Database
from app.errors import not_found
from app.queue.names import AUTOSAVE, BUILD, FINISHED_STATES, JobState, job_state
from app.queue.redis_queue import DraftwireQueue, last_line
from app.realtime.events import utc_iso_ms

BUILD_PREFIX = "build:"
AUTOSAVE_PREFIX = "draft:"


def new_build_id() -> str:
    """A build job's id; its events go to channel ``job:<id>`` (matches the channel pattern)."""
    return f"{BUILD_PREFIX}{uuid.uuid4()}"


def autosave_owner(job_id: str) -> str | None:
    """The user named in an autosave job id ``draft:<userId>:<draftId>``, or None."""
    if not job_id.startswith(AUTOSAVE_PREFIX):
        return None
    owner, sep, draft_id = job_id[len(AUTOSAVE_PREFIX) :].rpartition(":")
    return owner if sep and owner and draft_id else None


class JobStore:
    """The ``jobs`` table: written as the owner (RLS), read as the owner or via ``job_owner()``."""

    def __init__(self, db: Database) -> None:
        self.db = db

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

    async def record(self, user_id: str, job_id: str, state: JobState, error: str | None = None) -> None:
        """The handler's view of its job; a missing row (purged, or enqueued by hand) is recreated."""
        async with self.db.user_tx(user_id, "jobs.record") as conn:
            await conn.execute(
                "INSERT INTO jobs (id, owner_user_id, type, queue, status, error)"
                " VALUES (%s, current_setting('app.current_user_id'), 'build', %s, %s, %s)"
                " ON CONFLICT (id) DO UPDATE SET status = excluded.status, error = excluded.error,"
                " updated_at = now()",
                (job_id, BUILD, state.value, error),
            )

    async def owner(self, job_id: str) -> str | None:
        async with self.db.tx("jobs.owner") as conn:
            cur = await conn.execute("SELECT job_owner(%s) AS owner", (job_id,))
            row = await cur.fetchone()
        return row["owner"] if row else None

    async def describe(self, queues: dict[str, DraftwireQueue], user_id: str, job_id: str) -> dict[str, Any]:
        """The contract's job view; 404 for unknown ids and for other users' jobs alike."""
        if job_id.startswith(BUILD_PREFIX):
            async with self.db.user_tx(user_id, "jobs.get") as conn:
                cur = await conn.execute(
                    "SELECT type, status, error, created_at, updated_at FROM jobs WHERE id = %s", (job_id,)
                )
                row = await cur.fetchone()
                last_seq = await _head_seq(conn, job_id)
            if row is None:
                raise not_found("job")
            return _view(job_id, row["type"], await queues[BUILD].job(job_id), row, last_seq)
        if autosave_owner(job_id) == user_id:
            job = await queues[AUTOSAVE].job(job_id)
            if job is not None:
                async with self.db.tx("jobs.head") as conn:
                    last_seq = await _head_seq(conn, job_id)
                return _view(job_id, "autosave", job, None, last_seq)
        raise not_found("job")


async def _head_seq(conn: Conn, job_id: str) -> int:
    cur = await conn.execute("SELECT head_seq FROM channel_heads WHERE channel = %s", (f"job:{job_id}",))
    row = await cur.fetchone()
    return int(row["head_seq"]) if row else 0


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
