"""Build jobs: render a saved draft into a Markdown spec, one section per top-level payload key,
and tell the job's channel ``job:<jobId>`` how it goes.

Events, in order: ``build.started {sections}``, ``build.section.completed {index,total,title}``
per section (``index`` counts from 1), then ``build.completed {bytes}``; a build that ends in the
dead letter (error, timeout, lost worker, out of attempts) gets ``build.failed {error}`` instead.
A retried attempt starts over with a new ``build.started``. The handler is idempotent: the
Markdown row is replaced, never by an older draft version.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from saq.job import Job

from app.db import Database
from app.errors import ApiError
from app.events import EventPublisher
from app.jobs import JobStore
from app.queue.names import BUILD, JobState
from app.queue.redis_queue import last_line
from app.queue.worker import PermanentJobError
from observability.logging import get_logger

log = get_logger(__name__)

BUILD_FUNCTION = "build_draft"
BUILD_PREFIX = "build:"
JOB_TYPE = "build"

DraftReader = Callable[[str, str], Awaitable[dict[str, Any]]]
"""(user id, draft id) -> the newest saved version (``title``, ``payload`` JSON, ``version``);
raises a 404 ApiError when it is not theirs. Autosave's read-your-writes ``get``."""


def new_build_id() -> str:
    """A build job's id; its events go to channel ``job:<id>`` (matches the channel pattern)."""
    return f"{BUILD_PREFIX}{uuid.uuid4()}"

_STORE = """
INSERT INTO draft_builds (draft_id, owner_user_id, job_id, version, markdown)
VALUES (%s, current_setting('app.current_user_id'), %s, %s, %s)
ON CONFLICT (draft_id) DO UPDATE
    SET job_id = excluded.job_id, version = excluded.version, markdown = excluded.markdown, built_at = now()
    WHERE draft_builds.version <= excluded.version
"""


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _scalar(value: Any) -> str:
    return value.strip() if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


def render_section(title: str, value: Any) -> str:
    """One ``## title`` section: text as is, flat lists and objects as bullets, the rest as JSON."""
    if _is_scalar(value):
        body = _scalar(value)
    elif isinstance(value, list) and all(_is_scalar(v) for v in value):
        body = "\n".join(f"- {_one_line(_scalar(v))}" for v in value)
    elif isinstance(value, dict) and all(_is_scalar(v) for v in value.values()):
        body = "\n".join(f"- **{_one_line(k)}**: {_one_line(_scalar(v))}" for k, v in value.items())
    else:
        body = "```json\n" + json.dumps(value, ensure_ascii=False, indent=2) + "\n```"
    return f"## {_one_line(title) or '(untitled)'}\n\n{body}\n"


class DraftBuilder:
    """The ``build_draft`` job function and the dead-letter hook that reports failed builds."""

    def __init__(self, *, read_draft: DraftReader, db: Database, events: EventPublisher, jobs: JobStore) -> None:
        self.read_draft = read_draft
        self.db = db
        self.events = events
        self.jobs = jobs

    async def build_draft(self, ctx: dict[str, Any], *, user_id: str, draft_id: str) -> dict[str, Any]:
        job: Job = ctx["job"]
        channel = f"job:{job.key}"
        await self.jobs.record(user_id, job.key, JobState.ACTIVE, type_=JOB_TYPE, queue=BUILD)
        try:  # read-your-writes: the newest saved version, flushed to Postgres or not
            draft = await self.read_draft(user_id, draft_id)
        except ApiError as exc:
            if exc.status == 404:
                raise PermanentJobError("the draft no longer exists") from None
            raise
        payload = msgspec.json.decode(bytes(draft["payload"]))
        if not isinstance(payload, dict):
            raise PermanentJobError("the draft's payload is not an object")
        total = len(payload)
        await self.events.publish(channel, "build.started", {"sections": total})
        parts = [f"# {_one_line(draft['title'])}\n"]
        for index, (title, value) in enumerate(payload.items(), start=1):
            parts.append(render_section(title, value))
            await job.update(progress=round(index / max(total, 1), 4))
            await self.events.publish(
                channel, "build.section.completed", {"index": index, "total": total, "title": title}
            )
        markdown = "\n".join(parts)
        async with self.db.user_tx(user_id, "builds.store") as conn:
            await conn.execute(_STORE, (draft_id, job.key, int(draft["version"]), markdown))
        size = len(markdown.encode())
        await self.events.publish(channel, "build.completed", {"bytes": size})
        await self.jobs.record(user_id, job.key, JobState.COMPLETED, type_=JOB_TYPE, queue=BUILD)
        return {"bytes": size, "version": int(draft["version"])}

    async def on_failed(self, job: Job) -> None:
        """Dead-letter hook: tell the channel and record the failure on the job row."""
        if job.function != BUILD_FUNCTION:
            return
        error = _error_text(job.error)
        await self.events.publish(f"job:{job.key}", "build.failed", {"error": error})
        user_id = (job.kwargs or {}).get("user_id")
        if user_id:
            await self.jobs.record(user_id, job.key, JobState.FAILED, error, type_=JOB_TYPE, queue=BUILD)


def _error_text(error: str | None) -> str:
    line = last_line(error) or "the build failed"
    prefix = f"{PermanentJobError.__module__}.{PermanentJobError.__name__}: "
    return line.removeprefix(prefix).removeprefix(f"{PermanentJobError.__name__}: ")


async def get_markdown(db: Database, user_id: str, draft_id: str) -> str | None:
    """The latest Markdown built for the user's draft, or None (never built, or not theirs)."""
    async with db.user_tx(user_id, "builds.get") as conn:
        cur = await conn.execute("SELECT markdown FROM draft_builds WHERE draft_id = %s", (draft_id,))
        row = await cur.fetchone()
    return row["markdown"] if row else None
