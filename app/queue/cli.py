"""``draftwire queue stats|retry QUEUE JOBID|purge-failed QUEUE``: the admin API's operations
for an operator's shell, with readable output and exit codes (0 done, 1 nothing to do or not
found)."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from app.config import Settings

QueueAction = Callable[[dict[str, Any], argparse.Namespace], Awaitable[int]]


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the queue's subcommands to the ``draftwire`` parser."""
    queue = sub.add_parser("queue", help="inspect queues, retry a failed job, purge failed jobs")
    actions = queue.add_subparsers(dest="action", required=True)
    actions.add_parser("stats", help="jobs per queue and state").set_defaults(run=_run(_stats))
    retry = actions.add_parser("retry", help="put one failed job back on its queue")
    retry.add_argument("queue", help="queue name, e.g. draft-build")
    retry.add_argument("job_id", help="the job id (key), e.g. build:<uuid>")
    retry.set_defaults(run=_run(_retry))
    purge = actions.add_parser("purge-failed", help="delete a queue's failed jobs (nothing else)")
    purge.add_argument("queue", help="queue name")
    purge.set_defaults(run=_run(_purge))


def _run(action: QueueAction) -> Callable[[argparse.Namespace, Settings], int]:
    def command(args: argparse.Namespace, settings: Settings) -> int:
        return asyncio.run(_with_queues(settings, action, args))

    return command


async def _with_queues(settings: Settings, action: QueueAction, args: argparse.Namespace) -> int:
    from app.queue.names import QUEUES
    from app.queue.redis_queue import DraftwireQueue
    from app.redisconn import redis_client

    redis = redis_client(settings.redis_url)
    try:
        return await action({name: DraftwireQueue(redis, name=name) for name in QUEUES}, args)
    finally:
        await redis.aclose()


def _known(queues: dict[str, Any], name: str) -> Any:
    if name not in queues:
        print(f"unknown queue {name!r}; the queues are {', '.join(queues)}")
        return None
    return queues[name]


async def _stats(queues: dict[str, Any], args: argparse.Namespace) -> int:
    from app.queue.admin import queue_stats, render_stats

    print(render_stats(await queue_stats(queues)))
    return 0


async def _retry(queues: dict[str, Any], args: argparse.Namespace) -> int:
    from app.queue.redis_queue import RetryOutcome

    queue = _known(queues, args.queue)
    if queue is None:
        return 1
    outcome = await queue.requeue_failed(args.job_id)
    if outcome is RetryOutcome.RETRIED:
        print(f"retried {args.job_id} on {args.queue}: queued again with fresh attempts")
        return 0
    if outcome is RetryOutcome.NOT_FOUND:
        print(f"no job {args.job_id} in queue {args.queue}")
    else:
        print(f"job {args.job_id} is not failed; only failed jobs can be retried")
    return 1


async def _purge(queues: dict[str, Any], args: argparse.Namespace) -> int:
    queue = _known(queues, args.queue)
    if queue is None:
        return 1
    print(f"purged {await queue.purge_failed()} failed job(s) from {args.queue}")
    return 0

