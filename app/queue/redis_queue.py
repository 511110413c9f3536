"""Our SAQ ``RedisQueue``: what SAQ lacks, added by extension, nothing replaced wholesale.

- **Dead letter**: a job out of attempts is kept (no TTL) and indexed in ``saq:<q>:failed``
  until ``retry_failed`` or ``purge_failed``; completed jobs are indexed in ``saq:<q>:completed``.
- **Sub-second scheduling**: SAQ's schedule lock is ``SETEX`` (whole seconds); ours is
  ``PSETEX`` so the autosave coalescing window is honoured to the tick, not the second.
- **Equal-jitter backoff**: the delay before attempt n+1 is uniform in [b/2, b] with
  b = base * 2**(n-1), so delays grow every time and still spread out.
- **Trace context**: every enqueue carries the enqueuer's W3C context in ``job.meta``.
- Metrics and the ``job_failed_retrying`` / ``job_failed_permanently`` logs live here, so a
  sweep of a stalled job is counted like any other retry.
"""

from __future__ import annotations

import random
import time
from typing import Any

from saq.job import Job, Status
from saq.queue.redis import RedisQueue

from observability import tracing
from observability.logging import get_logger
from observability.metrics import JOB_RETRIES, JOBS_PROCESSED

log = get_logger("app.queue")

COMPLETED_TTL_SECONDS = 7 * 86400  # "finished job records older than 7 days" go (contract)
MAX_ERROR_CHARS = 8000


def equal_jitter_delay(attempts: int, base: float, cap: float) -> float:
    """Delay before the next attempt after ``attempts`` tries: uniform in [b/2, b]."""
    ceiling = min(cap, base * 2 ** max(attempts - 1, 0))
    return ceiling / 2 + random.uniform(0, ceiling / 2)  # noqa: S311 - jitter, not crypto


class DraftwireQueue(RedisQueue):
    """SAQ's Redis queue with a dead letter, metrics and sub-second scheduling."""

    def __init__(self, redis: Any, *, name: str, retry_cap: float = 60.0) -> None:
        super().__init__(redis, name=name, swept_error_message="stalled: worker lost or job timed out")
        self.retry_cap = retry_cap
        self.failed_key = self.namespace("failed")
        self.completed_key = self.namespace("completed")
        self._ms_schedule_script: Any = None
        self.register_before_enqueue(self._carry_trace)

    @staticmethod
    async def _carry_trace(job: Job) -> None:
        job.meta.setdefault("trace", tracing.inject())

    # --- scheduling -----------------------------------------------------------------------
    async def schedule(self, lock: float = 1) -> list[str]:
        if self._ms_schedule_script is None:
            self._ms_schedule_script = self.redis.register_script(
                """
                if redis.call('EXISTS', KEYS[1]) == 0 then
                    redis.call('PSETEX', KEYS[1], ARGV[1], 1)
                    local jobs = redis.call('ZRANGEBYSCORE', KEYS[2], 1, ARGV[2])
                    for _, v in ipairs(jobs) do
                        redis.call('ZADD', KEYS[2], 0, v)
                        redis.call('RPUSH', KEYS[3], v)
                    end
                    return jobs
                end
                """
            )
        ids = await self._ms_schedule_script(
            keys=[self._schedule, self._incomplete, self._queued],
            args=[max(1, int(lock * 1000)), time.time()],
        )
        return [i.decode() for i in ids or []]

    # --- retries and the dead letter --------------------------------------------------------
    async def _retry(self, job: Job, error: str | None) -> None:
        delay = equal_jitter_delay(job.attempts, job.retry_delay or 0.5, self.retry_cap)
        job.scheduled = time.time() + delay  # type: ignore[assignment] - SAQ stores floats fine
        job.error = _trim(error)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.lrem(self._active, 1, job.id).lrem(self._queued, 1, job.id)
            pipe.zadd(self._incomplete, {job.id: job.scheduled})
            pipe.set(job.id, self.serialize(job))
            await pipe.execute()
        await self.notify(job)
        JOB_RETRIES.labels(self.name).inc()
        log.warning(
            "job_failed_retrying",
            job_id=job.key,
            queue=self.name,
            attempt=job.attempts,
            max_attempts=job.retries,
            next_delay_s=round(delay, 3),
            error=_last_line(error),
        )

    async def _finish(
        self, job: Job, status: Status, *, result: Any = None, error: str | None = None
    ) -> None:
        job.error = _trim(error)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.lrem(self._active, 1, job.id).zrem(self._incomplete, job.id)
            if status == Status.FAILED:
                # The dead letter: kept until retried or purged.
                pipe.set(job.id, self.serialize(job)).zadd(self.failed_key, {job.id: time.time()})
            else:
                pipe.setex(job.id, COMPLETED_TTL_SECONDS, self.serialize(job))
                pipe.zadd(self.completed_key, {job.id: time.time()})
            await pipe.execute()
        await self.notify(job)
        if status == Status.FAILED:
            JOBS_PROCESSED.labels(self.name, "failed").inc()
            log.error(
                "job_failed_permanently",
                job_id=job.key,
                queue=self.name,
                attempts=job.attempts,
                error=_last_line(error),
            )
        elif status == Status.COMPLETE:
            JOBS_PROCESSED.labels(self.name, "done").inc()

    async def retry_failed(self, job_key: str) -> Job | None:
        """Move one failed job back to the queue with fresh attempts; None if it is not failed."""
        job = await self.job(job_key)
        if job is None or job.status != Status.FAILED:
            return job if job is None else None
        job.attempts = 0
        job.error = None
        job.scheduled = 0
        job.status = Status.QUEUED
        job.queued = int(time.time() * 1000)
        job.meta["retried_by_operator"] = job.meta.get("retried_by_operator", 0) + 1
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.zrem(self.failed_key, job.id)
            pipe.set(job.id, self.serialize(job))
            pipe.zadd(self._incomplete, {job.id: 0}).rpush(self._queued, job.id)
            await pipe.execute()
        await self.notify(job)
        return job

    async def purge_failed(self) -> int:
        """Delete every failed job of this queue (and nothing else); return how many."""
        ids = await self.redis.zrange(self.failed_key, 0, -1)
        if not ids:
            return 0
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(*ids).delete(self.failed_key)
            await pipe.execute()
        return len(ids)

    async def failed_jobs(self, limit: int = 100) -> list[Job]:
        ids = await self.redis.zrevrange(self.failed_key, 0, limit - 1)
        return [j for j in (self.deserialize(b) for b in (await self.redis.mget(ids) if ids else [])) if j]

    async def depth(self) -> dict[str, int]:
        """waiting / active / delayed / completed / failed, in one round trip."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.llen(self._queued).llen(self._active).zcard(self._incomplete)
            pipe.zcount(self.completed_key, time.time() - COMPLETED_TTL_SECONDS, "+inf")
            pipe.zcard(self.failed_key)
            waiting, active, incomplete, completed, failed = await pipe.execute()
        return {
            "waiting": waiting,
            "active": active,
            "delayed": max(0, incomplete - waiting - active),
            "completed": completed,
            "failed": failed,
        }

    async def trim_completed(self, older_than: float) -> int:
        """Forget completed-job index entries older than ``older_than`` (epoch seconds)."""
        return int(await self.redis.zremrangebyscore(self.completed_key, 0, older_than))


def _trim(error: str | None) -> str | None:
    return None if error is None else error[-MAX_ERROR_CHARS:]


def _last_line(error: str | None) -> str | None:
    if not error:
        return error
    lines = [line for line in error.strip().splitlines() if line.strip()]
    return lines[-1][:500] if lines else None
