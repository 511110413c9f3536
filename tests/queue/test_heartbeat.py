"""A job's heartbeat never outlives its job: when the job's work is done, the job finishes even
if a heartbeat call is stuck (a cancelled Redis call that does not return). Waiting for it
without a bound turned finished jobs into job timeouts and retries in two CI rehearsals of
tests/queue/test_recovery.py."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from saq.job import Job

from app.queue import worker

WAIT_S = 10.0


async def test_a_finished_job_does_not_wait_for_a_stuck_heartbeat() -> None:
    job = Job(function="probe", kwargs={}, heartbeat=0.3)  # touched every 0.1 s
    job.queued = job.started = int(time.time() * 1000)
    calls = 0

    async def stuck_update(**_: Any) -> None:
        nonlocal calls
        calls += 1
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            await asyncio.sleep(worker.HEARTBEAT_STOP_S + 0.5)  # the cancellation is lost for a while

    job.update = stuck_update  # type: ignore[method-assign]  # the fault: Redis never answers

    async def work(ctx: dict[str, Any], **_: Any) -> str:
        await asyncio.sleep(0.25)  # long enough for a heartbeat call to be in flight
        return "done"

    run = worker.traced("draft-build", "probe", work, timeout=WAIT_S)
    started = time.monotonic()
    assert await asyncio.wait_for(run({"job": job}), WAIT_S) == "done"
    assert calls >= 1, "no heartbeat call was in flight: the test proves nothing"
    assert time.monotonic() - started < worker.HEARTBEAT_STOP_S + 1.5
