"""Builds: render a saved draft into a Markdown spec on the ``draft-build`` queue, streaming
its progress on ``job:<jobId>``. Drafts are read through the reader the role hands in
(autosave's read-your-writes ``get``), so this package imports no other feature."""

from __future__ import annotations

from app.builds.build import BUILD_FUNCTION, BUILD_PREFIX, JOB_TYPE, DraftBuilder, DraftReader
from app.builds.routes import ROUTES, BuildStarter
from app.jobs import JobStore
from app.parts import HttpPart, WorkerPart, provide
from app.platform import Platform
from app.queue.names import BUILD
from app.queue.worker import job_defaults


def register_owners(platform: Platform, jobs: JobStore) -> None:
    """A build's channel ``job:build:<uuid>`` belongs to the owner of its ``jobs`` row."""
    platform.owners.register(f"job:{BUILD_PREFIX}", lambda rest: jobs.owner(BUILD_PREFIX + rest))


def http_part(platform: Platform, jobs: JobStore, read_draft: DraftReader) -> HttpPart:
    settings = platform.settings
    starter = BuildStarter(
        read_draft=read_draft,
        jobs=jobs,
        queue=platform.queues[BUILD],
        db=platform.db,
        job_defaults=job_defaults(settings.worker_task_timeout, settings.job_max_attempts),
    )
    return HttpPart(routes=list(ROUTES), dependencies={"builds": provide(starter)})


def worker_part(platform: Platform, jobs: JobStore, read_draft: DraftReader) -> WorkerPart:
    builder = DraftBuilder(read_draft=read_draft, db=platform.db, events=platform.events, jobs=jobs)
    platform.queues[BUILD].on_failed.append(builder.on_failed)
    return WorkerPart(functions={BUILD: {BUILD_FUNCTION: builder.build_draft}})


__all__ = ("JOB_TYPE", "http_part", "register_owners", "worker_part")
