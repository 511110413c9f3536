"""Process lifecycle: SIGTERM drains the gateway (restarts and topology are in test_faults.py)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from tests.realtime.conftest import RT_ENV
from tests.realtime.support import Client, channel_name
from tests.support.processes import ServiceProcess


async def test_sigterm_closes_sockets_with_1001(spawn: Callable[..., ServiceProcess], admin: str) -> None:
    """On SIGTERM open sockets are closed with 1001 and the process exits well within 30 s."""
    api = spawn("api", **RT_ENV)
    clients = [await Client.open(api.url, admin) for _ in range(3)]
    await clients[0].subscribe(channel_name())
    await clients[0].wait_op("caught_up")
    started = time.monotonic()
    stopper = asyncio.create_task(asyncio.to_thread(api.stop))
    for c in clients:
        assert await c.wait_closed(30) == 1001
        assert c.close_reason == "server is restarting"
    await stopper
    assert time.monotonic() - started < 30
    assert any(line.get("msg") == "realtime_draining" for line in api.logs())
