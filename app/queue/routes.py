"""Admin HTTP routes of the queue platform: the queues' depth, retry of one failed job, and purge
of a queue's failed jobs (the safe replacement for the runbook's ``FLUSHDB``)."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import delete, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, Parameter

from app.auth import AdminUser
from app.auth.audit import admin_action
from app.errors import ApiError
from app.http.openapi import documents
from app.queue.admin import QueueAdmin, queue_stats
from app.queue.names import QUEUES
from app.queue.redis_queue import DraftwireQueue, RetryOutcome
from observability.logging import get_logger

log = get_logger(__name__)

QueueName = Annotated[str, Parameter(description="A queue.", schema_extra={"enum": list(QUEUES)})]


def _queue(admin_queues: QueueAdmin, name: str) -> DraftwireQueue:
    queue = admin_queues.queues.get(name)
    if queue is None:
        known = ", ".join(admin_queues.queues)
        raise ApiError(404, "unknown_queue", f"No queue named {name[:64]!r}; the queues are {known}.")
    return queue


@get("/api/admin/queues")
async def admin_queues(admin: AdminUser, queue_admin: NamedDependency[QueueAdmin]) -> dict[str, dict[str, int]]:
    """Per queue: waiting, active, delayed, completed (last 7 days) and failed jobs."""
    return await queue_stats(queue_admin.queues)


@post("/api/admin/queues/{queue:str}/failed/{job_id:str}/retry", status_code=200, opt=documents(409))
async def admin_retry(
    admin: AdminUser, queue_admin: NamedDependency[QueueAdmin], queue: QueueName, job_id: FromPath[str]
) -> dict[str, str]:
    """Put one failed job back on its queue with fresh attempts."""
    outcome = await _queue(queue_admin, queue).requeue_failed(job_id)
    admin_action(admin, "queue.retry", f"{queue}/{job_id}", outcome=outcome.name.lower())
    if outcome is RetryOutcome.NOT_FOUND:
        raise ApiError(404, "unknown_job", f"No job with that id in queue {queue}.")
    if outcome is RetryOutcome.NOT_FAILED:
        raise ApiError(409, "job_not_failed", "That job is not in the failed state; only failed jobs can be retried.")
    return {"queue": queue, "jobId": job_id, "status": "queued"}


@delete("/api/admin/queues/{queue:str}/failed", status_code=200)
async def admin_purge_failed(
    admin: AdminUser, queue_admin: NamedDependency[QueueAdmin], queue: QueueName
) -> dict[str, Any]:
    """Delete the failed jobs of one queue; waiting, running and completed jobs stay."""
    purged = await _queue(queue_admin, queue).purge_failed()
    log.info("queue_failed_purged", queue=queue, count=purged)
    admin_action(admin, "queue.purge_failed", queue, count=purged)
    return {"queue": queue, "purged": purged}


ROUTES: list[Any] = [admin_queues, admin_retry, admin_purge_failed]
