"""Operator actions on the queues, shared by the admin API and ``draftwire queue ...``:
depth per queue, retry one failed job, purge the failed jobs of a queue (and nothing else)."""

from __future__ import annotations

from app.queue.names import DEPTH_STATES, QUEUES
from app.queue.redis_queue import DraftwireQueue, RetryOutcome

__all__ = ("DEPTH_STATES", "QUEUES", "QueueAdmin", "RetryOutcome", "queue_stats", "render_stats")


class QueueAdmin:
    """The queues an admin may look at, retry in and purge (the admin routes' dependency)."""

    def __init__(self, queues: dict[str, DraftwireQueue]) -> None:
        self.queues = queues


async def queue_stats(queues: dict[str, DraftwireQueue]) -> dict[str, dict[str, int]]:
    """``{queue: {waiting, active, delayed, completed, failed}}`` for every queue."""
    return {name: await queue.depth() for name, queue in queues.items()}


def render_stats(stats: dict[str, dict[str, int]]) -> str:
    """A table for people: one row per queue, one column per state."""
    width = max(len("queue"), *(len(n) for n in stats))
    lines = ["queue".ljust(width) + "".join(s.rjust(11) for s in DEPTH_STATES)]
    for name, depth in stats.items():
        lines.append(name.ljust(width) + "".join(str(depth[s]).rjust(11) for s in DEPTH_STATES))
    return "\n".join(lines)
