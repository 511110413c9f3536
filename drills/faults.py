"""Fault tools the drills share: background loops, process stalls, SQL as the schema owner,
jobs on the queue, sockets held open."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import psycopg
from websockets.asyncio.client import ClientConnection, connect

from drills.live import Live


@dataclass
class Background:
    """Loops a fault keeps running until the remedy (or the end of the drill) stops them."""

    stop_event: asyncio.Event = field(default_factory=asyncio.Event)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    sockets: list[ClientConnection] = field(default_factory=list)

    def every(self, seconds: float, step: Callable[[], Awaitable[Any]]) -> None:
        """Run ``step`` every ``seconds`` (errors are the fault's business, not the loop's)."""

        async def loop() -> None:
            while not self.stop_event.is_set():
                with contextlib.suppress(Exception):
                    await step()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stop_event.wait(), seconds)

        self.tasks.append(asyncio.create_task(loop()))

    async def stop(self) -> None:
        """Stop the loops, close the sockets (their readers end with them), and cancel whatever
        has not finished within a few seconds."""
        self.stop_event.set()
        for ws in self.sockets:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(), 3)
        self.sockets.clear()
        if self.tasks:
            _, late = await asyncio.wait(self.tasks, timeout=10)
            for task in late:
                task.cancel()
        self.tasks.clear()


def stall(pid: int, group: bool, seconds: float) -> Callable[[], Awaitable[None]]:
    """A step that freezes a process (SIGSTOP) for ``seconds`` and thaws it (SIGCONT)."""
    send = os.killpg if group else os.kill

    async def step() -> None:
        send(pid, signal.SIGSTOP)
        try:
            await asyncio.sleep(seconds)
        finally:
            send(pid, signal.SIGCONT)

    return step


async def sql(live: Live, statement: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """One statement as the schema owner (``DATABASE_URL``), autocommit."""
    async with await psycopg.AsyncConnection.connect(live.pg.url, autocommit=True) as conn:
        cur = await conn.execute(statement, params)
        return list(await cur.fetchall()) if cur.description else []


LOCK_APP = "drill-lock-holder"
"""application_name of the session that holds a drill's lock (so the remedy can find it)."""


def hold_lock(live: Live, table: str, mode: str, hold_s: float, gap_s: float, bg: Background) -> None:
    """A session that takes ``LOCK TABLE table IN mode MODE`` for ``hold_s``, lets go for
    ``gap_s``, and again, until stopped or terminated (pg_terminate_backend ends it)."""

    async def holder() -> None:
        url = f"{live.pg.url}?application_name={LOCK_APP}"
        with contextlib.suppress(psycopg.Error):
            async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
                while not bg.stop_event.is_set():
                    async with conn.transaction():
                        await conn.execute(f"LOCK TABLE {table} IN {mode} MODE")
                        await asyncio.sleep(hold_s)
                    await asyncio.sleep(gap_s)

    bg.tasks.append(asyncio.create_task(holder()))


async def terminate_lock_holder(live: Live) -> int:
    """The runbook's remedy for a lock: find the blocking session, pg_terminate_backend it."""
    rows = await sql(live, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
                     (LOCK_APP,))
    return len(rows)


async def enqueue(live: Live, function: str, n: int, attempts: int = 5, **kwargs: Any) -> list[str]:
    """``n`` test-only jobs on draft-build (the worker runs them with DRAFTWIRE_TEST_JOBS=1)."""
    from redis.asyncio import Redis

    from app.queue.names import BUILD
    from app.queue.redis_queue import DraftwireQueue
    from app.queue.worker import job_defaults

    redis = Redis.from_url(live.redis.url)
    keys = []
    try:
        queue = DraftwireQueue(redis, name=BUILD)
        await queue.connect()
        for _ in range(n):
            job = await queue.enqueue(function, key=f"drill:{uuid.uuid4()}", **kwargs, **job_defaults(2, attempts))
            assert job is not None
            keys.append(job.key)
    finally:
        await redis.aclose()
    return keys


async def redis_command(live: Live, *args: Any) -> Any:
    from redis.asyncio import Redis

    redis = Redis.from_url(live.redis.url)
    try:
        return await redis.execute_command(*args)  # type: ignore[no-untyped-call]
    finally:
        await redis.aclose()


async def open_socket(live: Live, base: str, channel: str | None = None) -> ClientConnection:
    """An admin WebSocket to ``base``, subscribed to ``channel`` (and caught up) if given."""
    url = base.replace("http://", "ws://") + f"/ws?token={live.token('drill-oncall', admin=True)}"
    ws = await connect(url, open_timeout=10, close_timeout=2, max_size=None)
    if channel:
        await ws.send(f'{{"op": "subscribe", "channel": "{channel}", "sinceSeq": 0}}')
        async with asyncio.timeout(15):
            while '"caught_up"' not in str(await ws.recv()):
                pass
    return ws


async def catch_up_once(live: Live, base: str, channel: str) -> None:
    """A tab opening: subscribe from seq 0, wait for caught_up, close."""
    ws = await open_socket(live, base, channel)
    await ws.close()


def fresh_user() -> str:
    return f"drill-{uuid.uuid4().hex[:10]}"
