"""Retries, backoff, timeouts and the dead letter, through a real worker process."""

from __future__ import annotations

import uuid

from app.queue.redis_queue import DraftwireQueue, equal_jitter_delay
from tests.queue.conftest import enqueue, eventually, job_status, logged, run_cli
from tests.support.processes import ServiceProcess

BUILD = "draft-build"


def test_equal_jitter_grows_and_spreads() -> None:
    """Each delay lies in [b/2, b] for b = base * 2**(n-1): never shorter than the one before,
    and spread out rather than identical (so retries of many jobs do not stampede)."""
    for attempt in range(1, 6):
        samples = [equal_jitter_delay(attempt, 0.5, 60) for _ in range(200)]
        ceiling = 0.5 * 2 ** (attempt - 1)
        assert all(ceiling / 2 <= d <= ceiling for d in samples)
        assert len({round(d, 6) for d in samples}) > 150
    assert equal_jitter_delay(20, 0.5, 60) <= 60


async def test_failing_handler_dead_letter_then_cli_retry(
    qworker: ServiceProcess, shared_queues: dict[str, DraftwireQueue], shared_redis_url: str, base_env: dict[str, str]
) -> None:
    """A handler that keeps failing is attempted exactly JOB_MAX_ATTEMPTS (3) times with growing,
    jittered delays, then stays failed with its error and traceback; `draftwire queue retry`
    brings it back and, once the cause is fixed, it succeeds. Retry and failure counters move."""
    queue = shared_queues[BUILD]
    retries_before = qworker.metric("job_retries_total", {"queue": BUILD})
    failed_before = qworker.metric("jobs_processed_total", {"queue": BUILD, "status": "failed"})
    done_before = qworker.metric("jobs_processed_total", {"queue": BUILD, "status": "done"})
    gate = uuid.uuid4().hex
    key = await enqueue(queue, "fail_unless_allowed", gate=gate)

    await eventually(lambda: job_status(queue, key), lambda s: s == "failed", timeout=30)
    job = await queue.job(key)
    assert job is not None
    assert job.attempts == 3
    assert f"gate {gate} is closed" in (job.error or "")
    assert "Traceback" in (job.error or "")

    retrying = await eventually(
        lambda: _async(logged(qworker, "job_failed_retrying", job_id=key)), lambda r: len(r) == 2
    )
    assert [r["attempt"] for r in retrying] == [1, 2]
    first, second = (r["next_delay_s"] for r in retrying)
    assert 0.25 <= first <= 0.5 <= second <= 1.0
    assert all("is closed" in r["error"] for r in retrying)
    final = logged(qworker, "job_failed_permanently", job_id=key)
    assert len(final) == 1
    assert final[0]["attempts"] == 3
    assert "is closed" in final[0]["error"]
    assert qworker.metric("job_retries_total", {"queue": BUILD}) == retries_before + 2
    assert qworker.metric("jobs_processed_total", {"queue": BUILD, "status": "failed"}) == failed_before + 1

    await queue.redis.set(f"dwtest:allow:{gate}", 1)
    result = run_cli(shared_redis_url, base_env, "queue", "retry", BUILD, key)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "retried" in result.stdout
    await eventually(lambda: job_status(queue, key), lambda s: s == "complete", timeout=15)
    assert qworker.metric("jobs_processed_total", {"queue": BUILD, "status": "done"}) >= done_before + 1
    again = run_cli(shared_redis_url, base_env, "queue", "retry", BUILD, key)
    assert again.returncode == 1
    assert "not failed" in again.stdout


async def test_timeout_cancels_and_retries(qworker: ServiceProcess, shared_queues: dict[str, DraftwireQueue]) -> None:
    """A job running past the worker's WORKER_TASK_TIMEOUT (2 s) is cancelled and retried, even
    when its enqueuer allowed it longer; out of attempts it lands in the dead letter."""
    queue = shared_queues[BUILD]
    key = await enqueue(queue, "sleep_for", timeout=60, attempts=2, seconds=30)
    await eventually(lambda: job_status(queue, key), lambda s: s == "failed", timeout=20)
    job = await queue.job(key)
    assert job is not None
    assert job.attempts == 2
    assert "TimeoutError" in (job.error or "")
    retried = logged(qworker, "job_failed_retrying", job_id=key)
    assert len(retried) == 1
    assert "TimeoutError" in retried[0]["error"]


async def test_poisoned_job_does_not_stall_others(
    qworker: ServiceProcess, shared_queues: dict[str, DraftwireQueue]
) -> None:
    """While a poisoned job fails through its attempts, other jobs of the queue run normally."""
    queue = shared_queues[BUILD]
    poisoned = await enqueue(queue, "always_fail")
    others = [await enqueue(queue, "noop") for _ in range(20)]
    for key in others:
        await eventually(lambda k=key: job_status(queue, k), lambda s: s == "complete", timeout=10)
    await eventually(lambda: job_status(queue, poisoned), lambda s: s == "failed", timeout=20)


async def _async(value: object) -> object:
    return value
