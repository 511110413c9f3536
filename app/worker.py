"""``draftwire worker``: SAQ workers for every queue in one process, ``/healthz`` and ``/metrics``
on ``WORKER_METRICS_PORT``, and a clean SIGTERM: stop taking jobs, let running ones finish
within the grace period, return the rest to their queue."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from typing import Any, ClassVar

from opentelemetry.instrumentation.utils import suppress_instrumentation

from app.autosave.flush import FlushBatcher, FlushFollowUp, flush_handler
from app.config import Settings, parse_duration
from app.health import metrics_response
from app.queue import testing
from app.queue.backup import restore_backup_gauge
from app.queue.build import BUILD_FUNCTION, DraftBuilder
from app.queue.jobs import JobStore
from app.queue.maintenance import BACKUP_TIMEOUT_S, backup_cron, maintenance_cron, maintenance_handlers
from app.queue.names import AUTOSAVE, BUILD, MAINTENANCE
from app.queue.worker import (
    AUTOSAVE_SCHEDULE_TICK_S,
    SCHEDULE_TICK_S,
    SWEEP_EVERY_S,
    CronJob,
    DraftwireWorker,
    job_defaults,
    traced,
)
from app.runtime import Runtime
from observability import tracing
from observability.logging import get_logger

log = get_logger("app.worker")

SHUTDOWN_GRACE_S = 25
"""Running jobs get this long after SIGTERM before they are cancelled and re-queued (< 30 s).
``DRAFTWIRE_SHUTDOWN_GRACE`` shortens it (tests of the re-queue path)."""
MAINTENANCE_CONCURRENCY = 2


class Worker(DraftwireWorker):
    SIGNALS: ClassVar[list[signal.Signals]] = []  # the process handles signals once for all queues


def build_workers(runtime: Runtime, settings: Settings) -> tuple[list[Worker], list[Any]]:
    """One SAQ worker per queue with its functions; plus background services to run beside."""
    batcher = FlushBatcher(
        db=runtime.db,
        store=runtime.drafts,
        events=runtime.events,
        batch_size=settings.autosave_batch_size,
        flush_delay=settings.autosave_flush_delay,
        queue=runtime.queues[AUTOSAVE],
    )
    follow_up = FlushFollowUp(
        queue=runtime.queues[AUTOSAVE],
        store=runtime.drafts,
        db=runtime.db,
        flush_delay=settings.autosave_flush_delay,
        defaults=job_defaults(settings.worker_task_timeout, settings.job_max_attempts),
    )
    grace = os.environ.get("DRAFTWIRE_SHUTDOWN_GRACE")
    common: dict[str, Any] = {
        "concurrency": settings.worker_concurrency,
        "timers": {"schedule": SCHEDULE_TICK_S, "sweep": SWEEP_EVERY_S},  # type: ignore[typeddict-item]
        "dequeue_timeout": 1.0,
        "shutdown_grace_period_s": parse_duration(grace) if grace else SHUTDOWN_GRACE_S,
        "cancellation_hard_deadline_s": 2.0,
    }
    timeout = settings.worker_task_timeout

    def functions(queue: str, handlers: dict[str, Any]) -> list[tuple[str, Any]]:
        return [(name, traced(queue, name, fn, timeout=timeout)) for name, fn in handlers.items()]

    builder = DraftBuilder(autosave=runtime.autosave, db=runtime.db, events=runtime.events, jobs=JobStore(runtime.db))
    runtime.queues[BUILD].on_failed.append(builder.on_failed)
    build_handlers: dict[str, Any] = {BUILD_FUNCTION: builder.build_draft}
    if testing.enabled():
        build_handlers.update(testing.test_functions(runtime.redis))
    nightly = maintenance_handlers(runtime.db, runtime.queues, settings)
    attempts = settings.job_max_attempts
    workers = [
        Worker(
            runtime.queues[AUTOSAVE],
            functions=functions(AUTOSAVE, {"flush_draft": flush_handler(batcher)}),
            after_process=follow_up.after_process,
            **{**common, "timers": {**common["timers"], "schedule": AUTOSAVE_SCHEDULE_TICK_S}},
        ),
        Worker(runtime.queues[BUILD], functions=functions(BUILD, build_handlers), **common),
        Worker(
            runtime.queues[MAINTENANCE],
            functions=[],
            cron_jobs=[
                CronJob(
                    traced(MAINTENANCE, "maintenance", nightly["maintenance"], timeout=timeout),
                    cron=maintenance_cron(),
                    timeout=max(1, int(timeout)),
                    retries=attempts,
                ),
                CronJob(
                    traced(MAINTENANCE, "backup", nightly["backup"], timeout=BACKUP_TIMEOUT_S),
                    cron=backup_cron(),
                    timeout=BACKUP_TIMEOUT_S,
                    retries=attempts,
                ),
            ],
            **{**common, "concurrency": MAINTENANCE_CONCURRENCY},
        ),
    ]
    return workers, [batcher, follow_up]


_NOT_GET = b'{"error":"method_not_allowed","detail":"Only GET is served here."}'
_NOT_FOUND = b'{"error":"not_found","detail":"Try /healthz or /metrics."}'


async def _serve_metrics(port: int) -> asyncio.Server:
    """A minimal HTTP/1.1 server: GET /healthz and GET /metrics, nothing else."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            request_line, *header_lines = head.decode("latin-1").split("\r\n")
            parts = request_line.split(" ")
            path = parts[1].split("?", 1)[0] if len(parts) > 1 else "/"
            headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in header_lines if h)}
            if parts[0] != "GET":
                status, body, ctype = "405 Method Not Allowed", _NOT_GET, "application/json"
            elif path == "/healthz":
                status, body, ctype = "200 OK", b'{"status":"ok"}', "application/json"
            elif path == "/metrics":
                body, ctype = metrics_response(headers.get("accept", ""))
                status = "200 OK"
            else:
                status, body, ctype = "404 Not Found", _NOT_FOUND, "application/json"
            writer.write(
                f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
                "Connection: close\r\n\r\n".encode()
                + body
            )
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()

    return await asyncio.start_server(handle, "0.0.0.0", port)  # noqa: S104


async def run(settings: Settings) -> None:
    if settings.worker_nice:
        os.nice(settings.worker_nice)  # lowering priority needs no privilege
    tracing.configure("draftwire-worker")
    restore_backup_gauge(settings.backup_dir)
    runtime = Runtime.create(settings, pool_max=max(4, settings.worker_concurrency))
    await runtime.start()
    workers, services = build_workers(runtime, settings)
    batcher, follow_up = services
    batcher.start()
    sweeper = asyncio.create_task(follow_up.run(), name="autosave-sweeper")
    server = await _serve_metrics(settings.worker_metrics_port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    log.info("worker_started", queues=[w.queue.name for w in workers], port=settings.worker_metrics_port,
             concurrency=settings.worker_concurrency)
    # SAQ's own bookkeeping (dequeue polls, status writes, schedule ticks, sweeps) runs with
    # client instrumentation suppressed: a span per poll would cost more than the jobs and trace
    # nothing a person asks about. Job spans set their parent explicitly (the enqueuer's trace),
    # so the Redis and Postgres calls a job makes are spans as usual.
    with suppress_instrumentation():
        runs = [asyncio.create_task(w.start(), name=f"worker-{w.queue.name}") for w in workers]
    try:
        await stop.wait()
        log.info("worker_draining", grace_s=SHUTDOWN_GRACE_S)
    finally:
        for worker in workers:
            worker.event.set()
        await asyncio.gather(*runs, return_exceptions=True)
        sweeper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sweeper
        await batcher.stop()
        server.close()
        await runtime.stop()
        log.info("worker_stopped")
