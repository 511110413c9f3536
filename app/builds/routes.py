"""``POST /api/drafts/{draftId}/build`` (queue a build) and ``GET /api/drafts/{draftId}/build``
(the latest Markdown)."""

from __future__ import annotations

import contextlib
import uuid
from dataclasses import dataclass
from typing import Any

from litestar import Response, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath

from app.auth import CurrentUser
from app.builds.build import BUILD_FUNCTION, JOB_TYPE, DraftReader, get_markdown, new_build_id
from app.db import Database
from app.errors import ApiError, not_found, unavailable
from app.jobs import JobStore
from app.queue.names import BUILD
from app.queue.redis_queue import DraftwireQueue
from observability import tracing
from observability.logging import get_logger

log = get_logger(__name__)


@dataclass(frozen=True)
class BuildStarter:
    """What the build routes use: the draft reader, job records, the queue and its defaults."""

    read_draft: DraftReader
    jobs: JobStore
    queue: DraftwireQueue
    db: Database
    job_defaults: dict[str, Any]


def _draft_id(raw: str) -> str:
    try:
        return str(uuid.UUID(raw))
    except ValueError:
        raise not_found("draft") from None


@post("/api/drafts/{draft_id:str}/build", status_code=202)
async def start_build(
    user: CurrentUser, builds: NamedDependency[BuildStarter], draft_id: FromPath[str]
) -> Response[dict[str, str]]:
    """Queue a build of the draft's newest saved version; its events go to ``job:<jobId>``."""
    user_id = user.user_id
    draft_id = _draft_id(draft_id)
    await builds.read_draft(user_id, draft_id)  # 404 when never saved or someone else's
    job_id = new_build_id()
    await builds.jobs.create(user_id, job_id, type_=JOB_TYPE, queue=BUILD, draft_id=draft_id)
    with tracing.tracer("draftwire.queue").start_as_current_span(
        "build enqueue", attributes={"messaging.destination.name": BUILD}
    ):
        try:
            await builds.queue.enqueue(
                BUILD_FUNCTION, key=job_id, user_id=user_id, draft_id=draft_id, **builds.job_defaults
            )
        except Exception as exc:
            log.error("build_enqueue_failed", job_id=job_id, queue=BUILD, error=type(exc).__name__)
            with contextlib.suppress(Exception):
                await builds.jobs.delete(user_id, job_id)
            raise unavailable("queue_unavailable", "Builds cannot be queued right now; retry shortly.") from None
    log.info("build_enqueued", job_id=job_id, queue=BUILD)
    return Response({"jobId": job_id}, status_code=202)


@get("/api/drafts/{draft_id:str}/build", media_type="text/markdown; charset=utf-8")
async def latest_build(
    user: CurrentUser, builds: NamedDependency[BuildStarter], draft_id: FromPath[str]
) -> Response[str]:
    """The latest Markdown built from the draft (404 if it was never built)."""
    markdown = await get_markdown(builds.db, user.user_id, _draft_id(draft_id))
    if markdown is None:
        raise ApiError(404, "not_found", "No build of that draft exists for you; POST to this path to build it.")
    return Response(markdown, media_type="text/markdown; charset=utf-8")


ROUTES: list[Any] = [start_build, latest_build]
