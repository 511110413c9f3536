"""A job's trace context comes from its enqueuer: the first attempt is a child of the enqueuing
span; a retry starts a trace of its own, linked to the enqueuer's span."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.autosave.conftest import eventually


async def test_first_attempt_is_a_child_and_a_retry_is_linked(
    spans: InMemorySpanExporter,
    base_env: dict[str, str],
    fresh_redis_url: Callable[[], str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Attempt 1 runs in the enqueuer's trace (parent = the enqueuing span); attempt 2 has a new
    trace id and a link to the enqueuing span (real SAQ worker, Redis and retry path)."""
    from app import config
    from app.platform import Platform
    from app.queue.names import BUILD
    from app.queue.worker import job_defaults
    from app.roles.worker import build_workers, worker_parts
    from observability import tracing

    env = {**base_env, "REDIS_URL": fresh_redis_url(), "DRAFTWIRE_TEST_JOBS": "1", "JOB_MAX_ATTEMPTS": "2"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = config.load()
    runtime = Platform.create(settings)
    parts = worker_parts(runtime)
    await runtime.open()
    workers = build_workers(runtime, parts)
    build = next(w for w in workers if w.queue.name == BUILD)
    running = asyncio.create_task(build.start())
    try:
        with tracing.tracer("test").start_as_current_span("enqueuer") as enqueuer:
            job = await runtime.queues[BUILD].enqueue(
                "always_fail", key="trace-probe", **job_defaults(settings.worker_task_timeout, 2)
            )
        assert job is not None

        def attempts() -> list[ReadableSpan]:
            return sorted(
                (s for s in spans.get_finished_spans() if s.name == f"job {BUILD}"),
                key=lambda s: s.attributes["draftwire.job.attempt"],  # type: ignore[index]
            )

        async def probe() -> list[ReadableSpan]:
            return attempts()

        first, second = await eventually(probe, lambda found: len(found) >= 2, timeout=30)
    finally:
        build.event.set()
        await asyncio.gather(running, return_exceptions=True)
        await runtime.close()
    origin = enqueuer.get_span_context()
    assert first.context.trace_id == origin.trace_id
    assert first.parent is not None and first.parent.span_id == origin.span_id
    assert second.context.trace_id != origin.trace_id
    assert [link.context.span_id for link in second.links] == [origin.span_id]
