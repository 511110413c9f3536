"""The job queue: SAQ's Redis queue and worker with a thin layer of ours for metrics, trace
context, a dead letter, sub-second scheduling and equal-jitter backoff, plus the admin routes
and ``draftwire queue ...`` over it. It knows no feature: they bring their job functions."""

from app.parts import HttpPart, provide
from app.queue.admin import QueueAdmin
from app.queue.names import AUTOSAVE, BUILD, MAINTENANCE, QUEUES, JobState
from app.queue.redis_queue import DraftwireQueue
from app.queue.routes import ROUTES


def http_part(queues: dict[str, DraftwireQueue]) -> HttpPart:
    """The admin routes over this process's queues."""
    return HttpPart(routes=list(ROUTES), dependencies={"queue_admin": provide(QueueAdmin(queues))})


__all__ = ("AUTOSAVE", "BUILD", "MAINTENANCE", "QUEUES", "JobState", "http_part")
