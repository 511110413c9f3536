"""``GET /api/jobs/{jobId}``: one of the caller's jobs (builds and autosave flushes)."""

from __future__ import annotations

from typing import Any

from litestar import get
from litestar.di import NamedDependency
from litestar.params import FromPath

from app.auth import CurrentUser
from app.jobs.store import JobStore


@get("/api/jobs/{job_id:str}")
async def job_status(user: CurrentUser, jobs: NamedDependency[JobStore], job_id: FromPath[str]) -> dict[str, Any]:
    """One of the caller's jobs; others' jobs and unknown ids are the same 404."""
    return await jobs.describe(user.user_id, job_id)


ROUTES: list[Any] = [job_status]
