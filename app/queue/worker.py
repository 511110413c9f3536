"""SAQ's worker with our job wrapper: a span per attempt (child of the enqueuer on the first
attempt, a new trace linked to it on retries), a heartbeat so a lost worker's job is swept and
re-run quickly, and ``job_duration_seconds`` / ``job_wait_seconds``."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any

from croniter import croniter
from opentelemetry import context as otel_context
from opentelemetry import trace
from saq import Worker
from saq.job import CronJob, Job

from observability import tracing
from observability.logging import get_logger
from observability.metrics import JOB_DURATION, JOB_WAIT, observe

log = get_logger("app.queue")

Handler = Callable[..., Awaitable[Any]]

SCHEDULE_TICK_S = 0.25
"""The longest a worker goes without looking for due (delayed, retrying) jobs. Between looks
it sleeps until the earliest one is due (but at least :data:`SCHEDULE_MIN_GAP_S`), so a job
is moved to its queue within a millisecond or two of its time when the queue is quiet, within
10 ms under load; only a job enqueued due sooner than this tick may wait up to the tick."""
AUTOSAVE_SCHEDULE_TICK_S = 0.05
"""The same for ``draft-autosave``, whose flush jobs are due 20 ms before AUTOSAVE_FLUSH_DELAY has
passed since a save (``autosave.service.write_delay``): moved within 1-10 ms, then written, the row
lands about when the window ends."""
SCHEDULE_LOCK_S = 0.002
"""One worker moves the due jobs per this long (SAQ's lock against duplicate moves)."""
SCHEDULE_MIN_GAP_S = 0.01
"""Under load due jobs are moved at most this often, several per move, so a flush batch takes
every draft due meanwhile. Moving each job the moment it was due (300 moves a second at 300
saves/s) split the batches and took the worker from 6-14 s to 17-18 s of CPU per 9,000 saves."""
SWEEP_EVERY_S = 5
"""How often stalled jobs are looked for (SAQ's default is 60 s)."""
HEARTBEAT_S = 6
"""A running job's heartbeat lease; it is touched every third of this."""
HEARTBEAT_STOP_S = 2.0
"""How long a finished job waits for its heartbeat task to end (it only touches the job)."""
CRON_SLOT_KEEP_S = 86400
"""How long a cron slot's claim is remembered after the slot's time."""


class PermanentJobError(Exception):
    """Raised by a handler when retrying cannot help (the draft is gone): straight to the dead letter."""


def traced(queue_name: str, name: str, fn: Handler, *, timeout: float | None = None) -> Handler:
    """Wrap a job function with its span, heartbeat and duration metric.

    ``timeout`` is this worker's ``WORKER_TASK_TIMEOUT``: the job is cancelled (and retried) when
    it runs longer, whatever timeout its enqueuer wrote into the job.
    """
    tracer = tracing.tracer("draftwire.worker")

    async def run(ctx: dict[str, Any], **kwargs: Any) -> Any:
        job: Job = ctx["job"]
        carrier = job.meta.get("trace")
        due_ms = max(job.queued, int(float(job.scheduled or 0) * 1000))
        observe(JOB_WAIT.labels(queue_name), max(0.0, (job.started - due_ms) / 1000))
        if job.attempts <= 1:
            parent, links = tracing.extract(carrier), []
        else:  # a retry is its own trace, linked to the one that enqueued it
            parent, links = otel_context.Context(), tracing.link_from(carrier)
        stop = asyncio.Event()
        heartbeat = asyncio.create_task(_heartbeat(job, stop)) if job.heartbeat else None
        start = time.perf_counter()
        try:
            with tracer.start_as_current_span(
                f"job {queue_name}",
                context=parent,
                links=links,
                kind=trace.SpanKind.CONSUMER,
                attributes={
                    "messaging.system": "saq",
                    "messaging.destination.name": queue_name,
                    "messaging.message.id": job.key,
                    "draftwire.job.function": name,
                    "draftwire.job.attempt": job.attempts,
                },
            ):
                async with asyncio.timeout(timeout):
                    return await fn(ctx, **kwargs)
        except PermanentJobError:
            job.retries = job.attempts  # SAQ then finishes it as failed instead of retrying
            raise
        finally:
            if heartbeat:
                # Bounded: an unbounded wait here would turn a heartbeat that does not end (a
                # cancelled Redis call that never returns) into a job timeout after its work was
                # done, as two CI rehearsals saw (tests/queue/test_recovery.py). The flag ends its
                # loop even if the cancellation was lost.
                stop.set()
                heartbeat.cancel()
                _, stuck = await asyncio.wait({heartbeat}, timeout=HEARTBEAT_STOP_S)
                if stuck:
                    log.warning("job_heartbeat_stuck", job_id=job.key, queue=queue_name)
            observe(JOB_DURATION.labels(queue_name), time.perf_counter() - start)

    run.__qualname__ = name
    return run


async def _heartbeat(job: Job, stop: asyncio.Event) -> None:
    """Touch the job every third of its lease so the sweep only takes jobs whose worker died;
    until ``stop`` is set."""
    while not stop.is_set():
        await asyncio.sleep(job.heartbeat / 3)
        if stop.is_set():
            return
        try:
            await job.update()
        except Exception:
            log.warning("job_heartbeat_failed", job_id=job.key, queue=job.queue.name if job.queue else None)


class DraftwireWorker(Worker[Any]):
    """SAQ worker whose schedule step wakes when the next delayed job is due (at most
    ``timers["schedule"]`` apart, see :data:`SCHEDULE_TICK_S`) instead of polling on a fixed tick;
    cron jobs are (re)declared once a second only."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.schedule_tick = float(kwargs.get("timers", {}).get("schedule", SCHEDULE_TICK_S))
        kwargs["timers"] = {**kwargs.get("timers", {}), "schedule": 0}  # SAQ's poll: no sleep of its own
        super().__init__(*args, **kwargs)
        self._cron_declared_at = 0.0
        self._cron_slots: dict[str, int] = {}

    async def upkeep(self) -> list[asyncio.Task[None]]:
        """SAQ's upkeep loops (abort, schedule, sweep, worker info), except that their sleeps
        end when the worker stops: with SAQ's plain sleeps a SIGTERM waited out the longest one
        (worker info, 10 s) before the process could exit."""

        async def poll(func: Callable[[int], Awaitable[Any]], every: int, arg: int | None = None) -> None:
            while not self.event.is_set():
                try:
                    await func(arg or every)
                except (Exception, asyncio.CancelledError):
                    if self.event.is_set():
                        return
                    log.exception("queue_upkeep_failed", queue=self.queue.name, step=getattr(func, "__name__", "?"))
                if not every:
                    await asyncio.sleep(0)  # as SAQ's loop: yield even when the step did not
                    continue
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.event.wait(), every)

        timers = self.timers
        return [
            asyncio.create_task(poll(self.abort, timers["abort"])),
            asyncio.create_task(poll(self.schedule, timers["schedule"])),
            asyncio.create_task(poll(self.queue.sweep, timers["sweep"])),
            asyncio.create_task(poll(self.worker_info, timers["worker_info"], timers["worker_info"] + 1)),
        ]

    async def schedule(self, lock: int = 1) -> None:
        """SAQ's schedule step. Its ``lock`` (whole seconds) is not used: one worker moves due
        jobs per :data:`SCHEDULE_LOCK_S`, and this step sleeps itself (``timers["schedule"]`` is
        0 for SAQ, ``schedule_tick`` here)."""
        now = time.monotonic()
        if self.cron_jobs and now - self._cron_declared_at >= 1.0:
            self._cron_declared_at = now
            await self._declare_cron()
        queue: Any = self.queue
        await queue.schedule(SCHEDULE_LOCK_S)
        wait = self.schedule_tick
        if queue.next_due is not None:
            wait = min(wait, max(SCHEDULE_MIN_GAP_S, queue.next_due - time.time()))
        await asyncio.sleep(wait)

    async def _declare_cron(self) -> None:
        # One job per schedule slot (contract: at most one run per slot across all workers).
        # The job key names the slot, but SAQ's dedupe only holds while a job is incomplete: a
        # worker whose clock lags could enqueue a slot that already ran. So the first worker
        # to claim the slot (SET NX) enqueues it, and nobody else ever does.
        redis = self.queue.redis  # type: ignore[attr-defined]
        for cron_job in self.cron_jobs:
            due = int(croniter(cron_job.cron, time.time()).get_next(float))
            name = cron_job.function.__qualname__
            if self._cron_slots.get(name) == due:
                continue
            claim = self.queue.namespace(f"cron-slot:{name}:{due}")  # type: ignore[attr-defined]
            ttl = max(60, int(due - time.time()) + CRON_SLOT_KEEP_S)
            if await redis.set(claim, self.id, nx=True, ex=ttl):
                try:
                    await self.queue.enqueue(
                        name,
                        key=f"cron:{name}:{due}",
                        scheduled=due,
                        timeout=cron_job.timeout or 0,
                        heartbeat=cron_job.heartbeat or HEARTBEAT_S,
                        retries=cron_job.retries or 1,
                        retry_delay=0.5,
                        ttl=cron_job.ttl or 600,
                        **(cron_job.kwargs or {}),
                    )
                except Exception:
                    await redis.delete(claim)  # let this or another worker claim it again
                    raise
            self._cron_slots[name] = due


def job_defaults(task_timeout: float, max_attempts: int) -> dict[str, Any]:
    """Per-job settings every enqueue uses: contract timeout and attempts, our heartbeat."""
    return {
        "timeout": max(1, math.ceil(task_timeout)),
        "retries": max_attempts,
        "retry_delay": 0.5,
        "heartbeat": HEARTBEAT_S,
    }


__all__ = ("CronJob", "DraftwireWorker", "PermanentJobError", "job_defaults", "traced")
