"""The ``worker`` role: SAQ workers for every queue in one process, the features' background
services, ``/healthz`` and ``/metrics`` on ``WORKER_METRICS_PORT``, and a clean SIGTERM: stop
taking jobs, let running ones finish within ``DRAFTWIRE_SHUTDOWN_GRACE``, return the rest."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Sequence
from typing import Any

from opentelemetry.instrumentation.utils import suppress_instrumentation

from app import autosave, builds, jobs, maintenance
from app.config import Settings
from app.health import Readiness
from app.parts import WorkerPart
from app.platform import Platform
from app.queue import testing
from app.queue.names import AUTOSAVE, BUILD, QUEUES
from app.queue.worker import AUTOSAVE_SCHEDULE_TICK_S, SCHEDULE_TICK_S, SWEEP_EVERY_S, CronJob, DraftwireWorker, traced
from app.roles.metrics_server import serve_metrics
from app.roles.shutdown import ExitWatchdog, bounded
from app.roles.tuning import tune_gc
from observability import tracing
from observability.logging import get_logger

log = get_logger("app.worker")

MAINTENANCE_CONCURRENCY = 2
CANCEL_DEADLINE_S = 2.0
"""After the shutdown grace, cancelled jobs get this long to go back to their queue."""
STOP_SLACK_S = 0.5
"""SAQ's own steps after the cancel deadline (putting cancelled jobs back, closing its pool)."""
CLOSE_BUDGET_S = 1.5
"""After the queues stopped: services, probes and connections close within this, all together."""
EXIT_MARGIN_S = 1.0
"""The watchdog ends a shutdown still running this long after the grace, the cancel deadline and
the close budget: 25 + 2 + 1.5 + 1 = 29.5 s after SIGTERM with the default grace (STOP_SLACK_S
comes out of this margin)."""


def exit_bound(grace: float) -> float:
    """Seconds from SIGTERM to the latest exit: the watchdog's deadline (29.5 s by default)."""
    return grace + CANCEL_DEADLINE_S + CLOSE_BUDGET_S + EXIT_MARGIN_S


class Worker(DraftwireWorker):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.SIGNALS = []  # the process handles signals once for all queues


def worker_parts(platform: Platform) -> list[WorkerPart]:
    """What this worker runs: a short list of the features' worker parts."""
    drafts = autosave.service(platform)
    job_store = jobs.store(platform)
    parts = [
        autosave.worker_part(platform, drafts),
        builds.worker_part(platform, job_store, read_draft=drafts.get),
        maintenance.worker_part(platform),
    ]
    if platform.settings.test_jobs:
        parts.append(WorkerPart(functions={BUILD: testing.test_functions(platform.redis)}))
    return parts


def build_workers(platform: Platform, parts: Sequence[WorkerPart]) -> list[Worker]:
    """One SAQ worker per queue with the parts' functions, cron jobs and hooks."""
    settings = platform.settings
    timeout = settings.worker_task_timeout
    common: dict[str, Any] = {
        "concurrency": settings.worker_concurrency,
        "dequeue_timeout": 1.0,
        "shutdown_grace_period_s": settings.shutdown_grace,
        "cancellation_hard_deadline_s": CANCEL_DEADLINE_S,
    }
    workers = []
    for name in QUEUES:
        functions = [
            (fn_name, traced(name, fn_name, fn, timeout=timeout))
            for part in parts
            for fn_name, fn in part.functions.get(name, {}).items()
        ]
        cron_jobs = [
            CronJob(
                traced(name, cron.name, cron.function, timeout=cron.timeout_s or timeout),
                cron=cron.schedule,
                timeout=int(cron.timeout_s or max(1, int(timeout))),
                retries=settings.job_max_attempts,
            )
            for part in parts
            for cron in part.cron.get(name, [])
        ]
        hooks = [part.after_process[name] for part in parts if name in part.after_process]
        options: dict[str, Any] = {
            **common,
            "timers": {"schedule": AUTOSAVE_SCHEDULE_TICK_S if name == AUTOSAVE else SCHEDULE_TICK_S,
                       "sweep": SWEEP_EVERY_S},
        }
        if cron_jobs and not functions:
            options["concurrency"] = MAINTENANCE_CONCURRENCY
        if hooks:
            options["after_process"] = hooks[0]
        workers.append(Worker(platform.queues[name], functions=functions, cron_jobs=cron_jobs, **options))
    return workers


async def run(settings: Settings) -> None:
    if settings.worker_nice:
        os.nice(settings.worker_nice)  # lowering priority needs no privilege
    tracing.configure("draftwire-worker")
    platform = Platform.create(settings, pool_max=max(4, settings.worker_concurrency))
    parts = worker_parts(platform)
    for part in parts:
        for hook in part.on_start:
            hook()
    await platform.open()
    readiness = Readiness(redis=platform.redis, db=platform.db, database_url=settings.database_url,
                          queues=platform.queues)
    readiness.start()  # redis_up, database_up and queue_depth for Prometheus
    workers = build_workers(platform, parts)
    services = [service for part in parts for service in part.services]
    for service in services:
        service.start()
    server = await serve_metrics(settings.worker_metrics_port)
    tune_gc()
    stop = asyncio.Event()
    watchdog = ExitWatchdog(exit_bound(settings.shutdown_grace))
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
        watchdog.arm()
        running = sum(len(w.job_task_contexts) for w in workers)
        log.info("worker_draining", grace_s=settings.shutdown_grace, running_jobs=running)
    finally:
        for worker in workers:
            worker.event.set()
        # SAQ waits the grace for running jobs, then cancels them (back to their queue) and
        # waits CANCEL_DEADLINE_S more; the rest of the exit has CLOSE_BUDGET_S.
        await bounded("workers", asyncio.gather(*runs, return_exceptions=True),
                      settings.shutdown_grace + CANCEL_DEADLINE_S + STOP_SLACK_S)
        closing = time.monotonic() + CLOSE_BUDGET_S
        for service in reversed(services):
            await bounded(f"service {type(service).__name__}", service.stop(), closing - time.monotonic())
        server.close()
        await bounded("readiness", readiness.stop(), closing - time.monotonic())
        await bounded("platform", platform.close(), closing - time.monotonic())
        log.info("worker_stopped")
