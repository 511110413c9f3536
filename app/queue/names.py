"""Queue names and the job states the API shows, in the words of the contract."""

from __future__ import annotations

import enum

AUTOSAVE = "draft-autosave"
BUILD = "draft-build"
MAINTENANCE = "maintenance"
QUEUES = (AUTOSAVE, BUILD, MAINTENANCE)


class JobState(str, enum.Enum):
    """A job as ``GET /api/jobs/{id}`` describes it."""

    QUEUED = "queued"
    ACTIVE = "active"
    RETRYING = "retrying"
    COMPLETED = "completed"
    FAILED = "failed"


# queue_depth{state} values, and the admin view's keys.
DEPTH_STATES = ("waiting", "active", "delayed", "completed", "failed")


def job_state(status: str, attempts: int) -> JobState:
    """SAQ's status in the contract's words: a queued job that already ran once is retrying;
    an aborted one (swept with no attempts left) counts as failed."""
    if status in ("new", "queued"):
        return JobState.RETRYING if attempts > 0 else JobState.QUEUED
    if status in ("active", "aborting"):
        return JobState.ACTIVE
    if status == "complete":
        return JobState.COMPLETED
    return JobState.FAILED


FINISHED_STATES = frozenset({JobState.COMPLETED, JobState.FAILED})
