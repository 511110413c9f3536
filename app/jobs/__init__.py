"""Job records and ``GET /api/jobs/{jobId}``: who owns a job and what state it is in, for every
kind of job the features enqueue (they register theirs; this package knows none of them)."""

from __future__ import annotations

from app.events import EventReader
from app.jobs.routes import ROUTES
from app.jobs.store import JobStore, Unrecorded
from app.parts import HttpPart, provide
from app.platform import Platform


def store(platform: Platform) -> JobStore:
    return JobStore(platform.db, platform.queues, EventReader(platform.db, page_size=1))


def http_part(jobs: JobStore) -> HttpPart:
    return HttpPart(routes=list(ROUTES), dependencies={"jobs": provide(jobs)})


__all__ = ("JobStore", "Unrecorded", "http_part", "store")
