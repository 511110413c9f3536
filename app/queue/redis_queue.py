"""Our SAQ ``RedisQueue``: what SAQ lacks, added by extension, nothing replaced wholesale.

- **Dead letter**: a job out of attempts is kept (no TTL) and indexed in ``saq:<q>:failed``
  until ``retry_failed`` or ``purge_failed``; completed jobs are indexed in ``saq:<q>:completed``.
- **Sub-second scheduling**: SAQ's schedule lock is ``SETEX`` (whole seconds); ours is
  ``PSETEX`` so the autosave coalescing window is honoured to the tick, not the second.
- **Equal-jitter backoff**: the delay before attempt n+1 is uniform in [b/2, b] with
  b = base * 2**(n-1), so delays grow every time and still spread out.
- **Trace context**: every enqueue carries the enqueuer's W3C context in ``job.meta``.
- **A faster, safer sweep**: a job is taken back when its heartbeat lapsed or it ran past its
  timeout plus a grace; lost jobs are reclaimed concurrently (SAQ waits 5 s on each in turn),
  and a job whose worker died between dequeue and start is only taken on its second sighting.
- Metrics and the ``job_failed_retrying`` / ``job_failed_permanently`` logs live here, so a
  sweep of a stalled job is counted like any other retry. ``on_failed`` hooks run whenever a
  job lands in the dead letter, whatever the path (exception, timeout, sweep).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from saq.job import Job, Status
from saq.queue.redis import RedisQueue

from observability import tracing
from observability.logging import get_logger
from observability.metrics import JOB_RETRIES, JOBS_PROCESSED

log = get_logger("app.queue")

COMPLETED_TTL_SECONDS = 7 * 86400  # "finished job records older than 7 days" go (contract)
MAX_ERROR_CHARS = 8000
SWEEP_GRACE_S = 5.0
"""A job is lost once it runs this long past its timeout (its own worker cancels it first)."""
RECLAIM_WAIT_S = 2.0
"""How long a sweep waits for a live worker to acknowledge the abort of a job it still runs."""

FailedHook = Callable[[Job], Awaitable[None]]


class RetryOutcome(str, enum.Enum):
    """What ``retry_failed`` did: the admin API maps these to 200 / 404 / 409."""

    RETRIED = "retried"
    NOT_FOUND = "not_found"
    NOT_FAILED = "not_failed"


# Delete every failed job of the queue and its index in one step, so a job an operator retries
# at the same moment is either retried or purged, never half of each.
_PURGE_FAILED = """
local ids = redis.call('ZRANGE', KEYS[1], 0, -1)
for _, id in ipairs(ids) do redis.call('DEL', id) end
redis.call('DEL', KEYS[1])
return #ids
"""

# Leave the dead letter only once, however many operators press retry at the same moment.
_REQUEUE = """
if redis.call('ZREM', KEYS[1], KEYS[2]) == 0 then return 0 end
redis.call('SET', KEYS[2], ARGV[1])
redis.call('ZADD', KEYS[3], 0, KEYS[2])
redis.call('RPUSH', KEYS[4], KEYS[2])
return 1
"""

_SWEEP_CLAIM = """
if redis.call('EXISTS', KEYS[1]) == 0 then
    redis.call('PSETEX', KEYS[1], ARGV[1], 1)
    local out = {}
    for i, v in ipairs(redis.call('LRANGE', KEYS[2], 0, -1)) do out[i] = {v, redis.call('GET', v)} end
    return out
end
return {}
"""


def equal_jitter_delay(attempts: int, base: float, cap: float) -> float:
    """Delay before the next attempt after ``attempts`` tries: uniform in [b/2, b]."""
    ceiling = min(cap, base * 2.0 ** max(attempts - 1, 0))
    return ceiling / 2 + random.uniform(0, ceiling / 2)


_dump_job = msgspec.json.Encoder().encode


_SCHEDULE = """
local moved = {}
if redis.call('EXISTS', KEYS[1]) == 0 then
    redis.call('PSETEX', KEYS[1], ARGV[1], 1)
    moved = redis.call('ZRANGEBYSCORE', KEYS[2], 1, ARGV[2])
    for _, v in ipairs(moved) do
        redis.call('ZADD', KEYS[2], 0, v)
        redis.call('RPUSH', KEYS[3], v)
    end
end
local nxt = redis.call('ZRANGEBYSCORE', KEYS[2], '(' .. ARGV[2], '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
return {moved, nxt[2] or false}
"""
"""SAQ's schedule with a lock in ms instead of whole seconds, that also answers when the next
delayed job is due (ZSET ``incomplete``: score 0 once queued, else the due time)."""


class DraftwireQueue(RedisQueue):
    """SAQ's Redis queue with a dead letter, metrics and sub-second scheduling."""

    def __init__(self, redis: Any, *, name: str, retry_cap: float = 60.0) -> None:
        # msgspec writes the same JSON as SAQ's default json.dumps, several times faster (every
        # save serializes its flush job); reading stays json.loads (it accepts both).
        super().__init__(redis, name=name, swept_error_message="stalled: worker lost or job timed out",
                         dump=_dump_job)
        self.retry_cap = retry_cap
        self.failed_key = self.namespace("failed")
        self.completed_key = self.namespace("completed")
        self._ms_schedule_script: Any = None
        self.next_due: float | None = None
        """When the earliest delayed job is due (epoch s), as of the last :meth:`schedule`."""
        self._sweep_claim = redis.register_script(_SWEEP_CLAIM)
        self._purge_failed = redis.register_script(_PURGE_FAILED)
        self._requeue = redis.register_script(_REQUEUE)
        self._suspects: set[str] = set()
        self.on_failed: list[FailedHook] = []
        """Called with the job after it lands in the dead letter (in the process that put it there)."""
        self.register_before_enqueue(self._carry_trace)
        # Create the labelled series at 0: increase() only sees a failure or retry that happens
        # after Prometheus first scraped the series, so it must exist before the first one.
        for status in ("done", "failed"):
            JOBS_PROCESSED.labels(name, status)
        JOB_RETRIES.labels(name)

    @staticmethod
    async def _carry_trace(job: Job) -> None:
        job.meta.setdefault("trace", tracing.inject())

    # --- scheduling -----------------------------------------------------------------------
    async def schedule(self, lock: float = 1) -> list[str]:
        """Move the jobs that are due to the queue (one process per ``lock`` seconds does it), and
        learn when the next one is due (:attr:`next_due`, epoch s; None when none waits)."""
        if self._ms_schedule_script is None:
            self._ms_schedule_script = self.redis.register_script(_SCHEDULE)
        moved, next_due = await self._ms_schedule_script(
            keys=[self._schedule, self._incomplete, self._queued],
            args=[max(1, int(lock * 1000)), time.time()],
        )
        self.next_due = float(next_due) if next_due else None
        return [i.decode() for i in moved or []]

    async def _update(self, job: Job, status: Status | None = None, **kwargs: Any) -> None:
        """SAQ's update with the status known (start of a job): store and notify in one round trip."""
        if status is None:
            return await super()._update(job, status, **kwargs)
        job.status = status
        async with self.redis.pipeline(transaction=False) as pipe:
            await pipe.set(job.id, self.serialize(job)).publish(job.id, job.status).execute()

    # --- taking back jobs whose worker is gone --------------------------------------------
    async def sweep(self, lock: float = 60, abort: float = RECLAIM_WAIT_S) -> list[str]:
        """Reclaim lost jobs of the active list; at most one process sweeps per ``lock`` seconds."""
        claimed = await self._sweep_claim(keys=[self._sweep, self._active], args=[max(1, int(lock * 1000))])
        now_ms = time.time() * 1000
        lost: list[Job] = []
        seen: set[str] = set()
        for raw_id, raw in claimed:
            job = self.deserialize(raw) if raw else None
            if job is None:  # record gone (purged or expired): drop the dangling id
                async with self.redis.pipeline(transaction=True) as pipe:
                    await pipe.lrem(self._active, 0, raw_id).zrem(self._incomplete, raw_id).execute()
            elif job.status in (Status.ACTIVE, Status.ABORTING):
                if _lapsed(job, now_ms):
                    lost.append(job)
            else:
                # Dequeued but never marked active: its worker may have died in between, or may be
                # about to mark it. Only a second sighting a sweep later proves the former.
                seen.add(job.id)
                if job.id in self._suspects:
                    lost.append(job)
        self._suspects = seen
        await asyncio.gather(*(self._reclaim(job, abort) for job in lost))
        return [job.id for job in lost]

    async def _reclaim(self, job: Job, wait: float) -> None:
        await self.abort(job, error=self.swept_error_message)
        with contextlib.suppress(asyncio.TimeoutError, RuntimeError):
            await job.refresh(wait)  # a live but stuck worker acknowledges the abort meanwhile
        if job.status in (Status.COMPLETE, Status.FAILED):
            return  # its worker finished it after all
        if job.retryable:
            await self.retry(job, self.swept_error_message)
        else:
            await self.finish(job, Status.FAILED, error=self.swept_error_message)

    # --- retries and the dead letter --------------------------------------------------------
    async def _retry(self, job: Job, error: str | None) -> None:
        delay = equal_jitter_delay(job.attempts, job.retry_delay or 0.5, self.retry_cap)
        job.scheduled = time.time() + delay  # type: ignore[assignment]  # SAQ stores floats fine
        job.error = _trim(error)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.lrem(self._active, 1, job.id).lrem(self._queued, 1, job.id)
            pipe.zadd(self._incomplete, {job.id: job.scheduled})
            pipe.set(job.id, self.serialize(job)).publish(job.id, job.status)
            await pipe.execute()
        JOB_RETRIES.labels(self.name).inc()
        log.warning(
            "job_failed_retrying",
            job_id=job.key,
            queue=self.name,
            attempt=job.attempts,
            max_attempts=job.retries,
            next_delay_s=round(delay, 3),
            error=last_line(error),
        )

    async def _finish(
        self, job: Job, status: Status, *, result: Any = None, error: str | None = None
    ) -> None:
        job.error = _trim(error)
        if status == Status.ABORTED:
            # A worker acknowledging a sweep's abort may report after the sweep already put the
            # job back; it must not overwrite the retried job.
            stored = await self.job(job.key)
            if stored is not None and stored.status not in (Status.ACTIVE, Status.ABORTING):
                return
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.lrem(self._active, 1, job.id).zrem(self._incomplete, job.id)
            if status == Status.FAILED:
                # The dead letter: kept until retried or purged.
                pipe.set(job.id, self.serialize(job)).zadd(self.failed_key, {job.id: time.time()})
            else:
                pipe.setex(job.id, COMPLETED_TTL_SECONDS, self.serialize(job))
                if status == Status.COMPLETE:
                    pipe.zadd(self.completed_key, {job.id: time.time()})
            pipe.publish(job.id, job.status)  # SAQ's notify, in the same round trip
            await pipe.execute()
        if status == Status.FAILED:
            JOBS_PROCESSED.labels(self.name, "failed").inc()
            log.error(
                "job_failed_permanently",
                job_id=job.key,
                queue=self.name,
                attempts=job.attempts,
                error=last_line(error),
            )
            for hook in self.on_failed:
                try:
                    await hook(job)
                except Exception as exc:
                    log.warning("job_failed_hook_error", job_id=job.key, queue=self.name, error=type(exc).__name__)
        elif status == Status.COMPLETE:
            JOBS_PROCESSED.labels(self.name, "done").inc()

    async def retry_failed(self, job_key: str) -> Job | None:
        """Move one failed job back to the queue with fresh attempts; None if it is not failed."""
        outcome, job = await self._requeue_failed(job_key)
        return job if outcome is RetryOutcome.RETRIED else None

    async def requeue_failed(self, job_key: str) -> RetryOutcome:
        """Like :meth:`retry_failed`, saying why nothing happened (unknown job, not failed)."""
        return (await self._requeue_failed(job_key))[0]

    async def _requeue_failed(self, job_key: str) -> tuple[RetryOutcome, Job | None]:
        job = await self.job(job_key)
        if job is None:
            return RetryOutcome.NOT_FOUND, None
        if job.status != Status.FAILED:
            return RetryOutcome.NOT_FAILED, job
        job.attempts = 0
        job.error = None
        job.scheduled = 0
        job.status = Status.QUEUED
        job.queued = int(time.time() * 1000)
        job.meta["retried_by_operator"] = job.meta.get("retried_by_operator", 0) + 1
        if not await self._requeue(
            keys=[self.failed_key, job.id, self._incomplete, self._queued], args=[self.serialize(job)]
        ):
            return RetryOutcome.NOT_FAILED, job  # another operator (or the autosave sweep) was first
        await self.notify(job)
        log.info("job_requeued", job_id=job.key, queue=self.name)
        return RetryOutcome.RETRIED, job

    async def purge_failed(self) -> int:
        """Delete every failed job of this queue (and nothing else); return how many."""
        return int(await self._purge_failed(keys=[self.failed_key]))

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


def _lapsed(job: Job, now_ms: float) -> bool:
    """True when a running job's worker is gone: no heartbeat in time, or far past its timeout."""
    if job.heartbeat and now_ms - job.touched > job.heartbeat * 1000:
        return True
    return bool(job.timeout and now_ms - job.started > (job.timeout + SWEEP_GRACE_S) * 1000)


def _trim(error: str | None) -> str | None:
    return None if error is None else error[-MAX_ERROR_CHARS:]


def last_line(error: str | None) -> str | None:
    """The last meaningful line of a traceback: what a person or a log line should see."""
    if not error:
        return error
    lines = [line for line in error.strip().splitlines() if line.strip()]
    return lines[-1][:500] if lines else None
