"""Autosave: validated, rate-limited saves whose newest version lives in Redis, written to
Postgres by workers in coalesced batches. The API side is :mod:`.service` and :mod:`.routes`,
the worker side :mod:`.flush`; :func:`http_part` and :func:`worker_part` are what roles use."""

from __future__ import annotations

from app.auth.bound import for_user
from app.autosave.fastpath import autosave_fast_path
from app.autosave.flush import FlushBatcher, FlushFollowUp, flush_handler
from app.autosave.routes import ROUTES
from app.autosave.service import FLUSH_FUNCTION, JOB_PREFIX, AutosaveService, write_delay
from app.autosave.store import DraftStore
from app.jobs import Unrecorded
from app.parts import HttpPart, WorkerPart
from app.platform import Platform
from app.queue.names import AUTOSAVE
from app.queue.worker import job_defaults


def service(platform: Platform) -> AutosaveService:
    """The API side, registered once per process: its Lua scripts join the warm-up, its drafts
    and flush jobs answer who owns their channels."""
    store = DraftStore(platform.redis, platform.pipelined)
    platform.scripts.extend(store.scripts)
    autosave = AutosaveService(settings=platform.settings, store=store, db=platform.db, queue=platform.queues[AUTOSAVE])
    platform.owners.register("draft:", autosave.owner_of)
    platform.owners.register(f"job:{JOB_PREFIX}", lambda rest: autosave.flush_job_owner(JOB_PREFIX + rest))
    return autosave


def unrecorded_jobs(autosave: AutosaveService) -> tuple[str, Unrecorded]:
    """Flush jobs have no ``jobs`` row: the id names the owner (``draft:<userId>:<draftId>``)."""
    return JOB_PREFIX, Unrecorded(type="autosave", queue=AUTOSAVE, owner=autosave.flush_job_owner)


def http_part(autosave: AutosaveService) -> HttpPart:
    return HttpPart(
        routes=list(ROUTES),
        dependencies={"drafts": for_user(autosave)},
        fast_paths={("POST", "/api/autosave"): autosave_fast_path(autosave, autosave.settings.jwt_verify_keys)},
        health={"autosave": autosave.health},
    )


def worker_part(platform: Platform, autosave: AutosaveService) -> WorkerPart:
    settings = platform.settings
    queue = platform.queues[AUTOSAVE]
    batcher = FlushBatcher(
        db=platform.db,
        store=autosave.store,
        events=platform.events,
        batch_size=settings.autosave_batch_size,
        flush_delay=write_delay(settings.autosave_flush_delay),
        queue=queue,
    )
    follow_up = FlushFollowUp(
        queue=queue,
        store=autosave.store,
        db=platform.db,
        flush_delay=write_delay(settings.autosave_flush_delay),
        defaults=job_defaults(settings.worker_task_timeout, settings.job_max_attempts),
    )
    return WorkerPart(
        functions={AUTOSAVE: {FLUSH_FUNCTION: flush_handler(batcher)}},
        after_process={AUTOSAVE: follow_up.after_process},
        services=[batcher, follow_up],
    )


__all__ = ("AutosaveService", "http_part", "service", "unrecorded_jobs", "worker_part")
