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
