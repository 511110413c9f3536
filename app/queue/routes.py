"""HTTP routes of the queue platform: build jobs, job status, and the admin view of the queues."""

from __future__ import annotations

import contextlib
import uuid
from typing import Any

from litestar import Request, Response, delete, get, post
from litestar.params import FromPath

from app.auth.guards import require_admin, require_user
from app.errors import ApiError, not_found, unavailable
from app.queue.admin import queue_stats
from app.queue.build import BUILD_FUNCTION, get_markdown
from app.queue.jobs import JobStore, new_build_id
from app.queue.names import BUILD
from app.queue.redis_queue import DraftwireQueue, RetryOutcome
from app.queue.worker import job_defaults
from observability import tracing
from observability.logging import get_logger

log = get_logger(__name__)

Req = Request[Any, Any, Any]


def _draft_id(raw: str) -> str:
    try:
        return str(uuid.UUID(raw))
    except ValueError:
        raise not_found("draft") from None


@post("/api/drafts/{draft_id:str}/build", status_code=202)
async def start_build(request: Req, draft_id: FromPath[str]) -> Response[dict[str, str]]:
    """Queue a build of the draft's newest saved version; its events go to ``job:<jobId>``."""
    runtime = request.app.state.runtime
    settings = runtime.settings
    user_id = require_user(request, settings.jwt_secret).user_id
    draft_id = _draft_id(draft_id)
    await runtime.autosave.get(user_id, draft_id)  # 404 when never saved or someone else's
    jobs = JobStore(runtime.db)
    job_id = new_build_id()
    await jobs.create(user_id, job_id, type_="build", queue=BUILD, draft_id=draft_id)
    with tracing.tracer("draftwire.queue").start_as_current_span(
        "build enqueue", attributes={"messaging.destination.name": BUILD}
    ):
        try:
            await runtime.queues[BUILD].enqueue(
                BUILD_FUNCTION,
                key=job_id,
                user_id=user_id,
                draft_id=draft_id,
                **job_defaults(settings.worker_task_timeout, settings.job_max_attempts),
            )
        except Exception as exc:
            log.error("build_enqueue_failed", job_id=job_id, queue=BUILD, error=type(exc).__name__)
            with contextlib.suppress(Exception):
                await jobs.delete(user_id, job_id)
            raise unavailable("queue_unavailable", "Builds cannot be queued right now; retry shortly.") from None
    log.info("build_enqueued", job_id=job_id, queue=BUILD)
    return Response({"jobId": job_id}, status_code=202)


@get("/api/drafts/{draft_id:str}/build")
async def latest_build(request: Req, draft_id: FromPath[str]) -> Response[str]:
    """The latest Markdown built from the draft (404 if it was never built)."""
    runtime = request.app.state.runtime
    user_id = require_user(request, runtime.settings.jwt_secret).user_id
    markdown = await get_markdown(runtime.db, user_id, _draft_id(draft_id))
    if markdown is None:
        raise ApiError(404, "not_found", "No build of that draft exists for you; POST to this path to build it.")
    return Response(markdown, media_type="text/markdown; charset=utf-8")


@get("/api/jobs/{job_id:str}")
async def job_status(request: Req, job_id: FromPath[str]) -> dict[str, Any]:
    """One of the caller's jobs (builds and autosave flushes); others' jobs are 404."""
    runtime = request.app.state.runtime
    user_id = require_user(request, runtime.settings.jwt_secret).user_id
    return await JobStore(runtime.db).describe(runtime.queues, user_id, job_id)


def _queue(request: Req, name: str) -> DraftwireQueue:
    runtime = request.app.state.runtime
    require_admin(request, runtime.settings.jwt_secret)
    queue = runtime.queues.get(name)
    if queue is None:
        known = ", ".join(runtime.queues)
        raise ApiError(404, "unknown_queue", f"No queue named {name[:64]!r}; the queues are {known}.")
    return queue  # type: ignore[no-any-return]


@get("/api/admin/queues")
async def admin_queues(request: Req) -> dict[str, dict[str, int]]:
    """Per queue: waiting, active, delayed, completed (last 7 days) and failed jobs."""
    runtime = request.app.state.runtime
    require_admin(request, runtime.settings.jwt_secret)
    return await queue_stats(runtime.queues)


@post("/api/admin/queues/{queue:str}/failed/{job_id:str}/retry", status_code=200)
async def admin_retry(request: Req, queue: FromPath[str], job_id: FromPath[str]) -> dict[str, str]:
    """Put one failed job back on its queue with fresh attempts."""
    outcome = await _queue(request, queue).requeue_failed(job_id)
    if outcome is RetryOutcome.NOT_FOUND:
        raise ApiError(404, "unknown_job", f"No job with that id in queue {queue}.")
    if outcome is RetryOutcome.NOT_FAILED:
        raise ApiError(409, "job_not_failed", "That job is not in the failed state; only failed jobs can be retried.")
    return {"queue": queue, "jobId": job_id, "status": "queued"}


@delete("/api/admin/queues/{queue:str}/failed", status_code=200)
async def admin_purge_failed(request: Req, queue: FromPath[str]) -> dict[str, Any]:
    """Delete the failed jobs of one queue; waiting, running and completed jobs stay."""
    purged = await _queue(request, queue).purge_failed()
    log.info("queue_failed_purged", queue=queue, count=purged)
    return {"queue": queue, "purged": purged}


ROUTES: list[Any] = [start_build, latest_build, job_status, admin_queues, admin_retry, admin_purge_failed]
