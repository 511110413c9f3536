"""Process lifecycle: SIGTERM drains the gateway, old sockets age out (restarts and topology are
in test_faults.py)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import httpx

from app.realtime.gateway import AGE_JITTER
from app.realtime.session import AGED_OUT
from tests.realtime.conftest import RT_ENV, Realtime
from tests.realtime.support import Client, channel_name, publish


async def test_sigterm_closes_sockets_with_1001(rt_stack: Callable[..., Realtime], admin: str) -> None:
    """On SIGTERM open sockets are closed with 1001 and the process exits well within 30 s."""
    api = rt_stack(**RT_ENV)
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


async def test_a_socket_is_closed_at_its_age_and_resumes_by_seq(rt_stack: Callable[..., Realtime], admin: str,
                                                                 http: httpx.AsyncClient) -> None:
    """REALTIME_MAX_CONNECTION_AGE: a socket is closed with 1001 between (1 - jitter) x age and
    age after it opened; its client reconnects with its last seq and gets every later event once,
    in order, including those published while it was away."""
    age = 3.0
    streams = rt_stack(**RT_ENV, REALTIME_MAX_CONNECTION_AGE=f"{age}s")
    channel = channel_name()
    opened = time.monotonic()
    old = await Client.open(streams.url, admin)
    await old.subscribe(channel)
    await publish(http, streams.api_url, admin, channel, 5)
    await old.wait_seq(channel, 5)
    assert await old.wait_closed(age + 5) == 1001
    lived = time.monotonic() - opened
    assert old.close_reason == AGED_OUT
    assert age * (1 - AGE_JITTER) - 0.1 <= lived <= age + 1.5, f"closed after {lived:.2f} s"
    await publish(http, streams.api_url, admin, channel, 3)  # while the client is away
    new = await Client.open(streams.url, admin)
    await new.subscribe(channel, since=old.last(channel))
    await publish(http, streams.api_url, admin, channel, 2)
    await new.wait_seq(channel, 10)
    assert old.seqs[channel] + new.seqs[channel] == list(range(1, 11))
    assert new.violations == [] and old.violations == []
    assert streams.metric("realtime_connections_rejected_total", {"reason": "max_age"}) >= 1
    await new.close()
    streams.stop()
