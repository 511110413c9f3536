"""Faults and topology: Redis restarted mid-stream, an API restarted, two API processes, a client
that stops reading. Real processes and sockets throughout."""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import psycopg

from devstack.servers import RedisServer
from tests.autosave.conftest import eventually
from tests.realtime.conftest import RT_ENV, Realtime
from tests.realtime.support import Client, assert_exactly, channel_name, publish
from tests.support.processes import ServiceProcess


async def _sql_publish(conn: psycopg.AsyncConnection[tuple[object, ...]], channel: str, n: int) -> None:
    """Commit events the way a worker does, without any announcement (Redis is down)."""
    for _ in range(n):
        await conn.execute("SELECT * FROM publish_event(%s, 'job.progress', '{}'::jsonb)", (channel,))


async def test_redis_restart_mid_stream(rt_stack: Callable[..., Realtime], workdir: Path, admin: str,
                                        http: httpx.AsyncClient,
                                        owner_conn: psycopg.AsyncConnection[tuple[object, ...]]) -> None:
    """Redis killed and restarted mid-stream: the gateway reconnects (backoff, metric, log), backfills
    from Postgres, and every subscriber ends with every seq, no gap, no duplicate."""
    redis = RedisServer(workdir / f"redis-{uuid.uuid4().hex[:6]}").start()
    try:
        api = rt_stack(**RT_ENV, REDIS_URL=redis.url)
        channels = [channel_name(), channel_name()]
        clients = [await Client.open(api.url, admin) for _ in range(4)]
        for c in clients:
            for ch in channels:
                await c.subscribe(ch)
        for ch in channels:
            await publish(http, api.api_url, admin, ch, 20)
        for c in clients:
            await c.wait_seq(channels[1], 20)

        redis.proc.kill()  # type: ignore[union-attr]
        redis.proc.wait()  # type: ignore[union-attr]
        for ch in channels:
            await _sql_publish(owner_conn, ch, 15)  # committed while Redis is gone
        redis.start()  # same port
        for ch in channels:
            await _sql_publish(owner_conn, ch, 5)  # may be announced to nobody: before resubscribe
        for c in clients:
            for ch in channels:
                await c.wait_seq(ch, 40, timeout=20)
        for ch in channels:
            await publish(http, api.api_url, admin, ch, 10)  # live again
        for c in clients:
            for ch in channels:
                await c.wait_seq(ch, 50)
                assert_exactly(c, ch, 1, 50)
            await c.close()
        assert api.metric("realtime_redis_reconnects_total") >= 1
        assert any(line.get("msg") == "redis_reconnecting" for line in api.logs())
        api.stop()
    finally:
        redis.stop()


async def test_api_restart_resume_from_last_seq(rt_stack: Callable[..., Realtime],
                                                spawn: Callable[..., ServiceProcess], admin: str,
                                                http: httpx.AsyncClient) -> None:
    """An API process restarted: clients that resubscribe with their last seq miss nothing."""
    api = rt_stack(**RT_ENV)
    other = spawn("api", **RT_ENV)  # keeps publishing while the first is down
    channel = channel_name()
    clients = [await Client.open(api.url, admin) for _ in range(3)]
    for c in clients:
        await c.subscribe(channel)
    await publish(http, other.url, admin, channel, 25)
    for c in clients:
        await c.wait_seq(channel, 25)
    stopping = asyncio.create_task(asyncio.to_thread(api.stop))
    await publish(http, other.url, admin, channel, 10)  # published while the API goes away
    await stopping
    lasts = [c.last(channel) for c in clients]
    await publish(http, other.url, admin, channel, 10)
    await asyncio.to_thread(api.start)
    resumed = [await Client.open(api.url, admin) for _ in clients]
    for r, last in zip(resumed, lasts, strict=True):
        await r.subscribe(channel, since=last)
    await publish(http, other.url, admin, channel, 5)
    for old, r, last in zip(clients, resumed, lasts, strict=True):
        await r.wait_seq(channel, 50)
        assert old.close_code == 1001
        assert old.seqs[channel] + r.seqs[channel] == list(range(1, 51)) and r.violations == []
        assert r.seqs[channel][0] == last + 1
        await r.close()
    api.stop()
    other.stop()


async def test_two_api_processes(rt_stack: Callable[..., Realtime], rt_api: Realtime, admin: str,
                                 http: httpx.AsyncClient) -> None:
    """With two API processes, an event published through one reaches sockets on the other."""
    second = rt_stack(**RT_ENV)
    channel = channel_name()
    here, there = await Client.open(rt_api.url, admin), await Client.open(second.url, admin)
    for c in (here, there):
        await c.subscribe(channel)
        await c.wait_op("caught_up", channel)
    await publish(http, rt_api.api_url, admin, channel, 30)
    for c in (here, there):
        await c.wait_seq(channel, 30)
        assert_exactly(c, channel, 1, 30)
        await c.close()
    second.stop()


def _group_rss_mib(pid: int) -> float:
    """Resident memory of a process group (Granian's main process and its worker)."""
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            if int(stat[2]) != pid:  # field 5: process group id
                continue
            total += int(stat[21]) * os.sysconf("SC_PAGE_SIZE")  # field 24: rss pages
        except (OSError, IndexError, ValueError):
            continue
    return total / 2**20


async def test_slow_reader_is_closed_memory_bounded(rt_stack: Callable[..., Realtime], admin: str,
                                                    http: httpx.AsyncClient, serving: str) -> None:
    """A client that stops reading is closed (1013) once its bounded outbound queue fills, the
    server's memory does not grow with what it was sent, and a reading client on the same
    channel keeps receiving everything. Under uvicorn (the gateway) its socket is then dropped."""
    api = rt_stack(**RT_ENV)
    channel = channel_name()
    slow = await Client.open(api.url, admin, max_queue=1)
    fast = await Client.open(api.url, admin)
    for c in (slow, fast):
        await c.subscribe(channel)
        await c.wait_op("caught_up", channel)
    slow._reader.cancel()  # stop reading: the kernel buffers fill, then the server's queue
    pid = api.proc.pid  # type: ignore[union-attr]
    baseline = _group_rss_mib(pid)
    blob = "x" * 60_000
    url = f"{api.api_url}/api/admin/channels/{channel}/events"
    auth = {"authorization": f"Bearer {admin}"}
    sent = 0
    while sent < 1500:  # 1,500 x 60 KB = 90 MB offered to the slow reader
        batch = [http.post(url, json={"type": "job.blob", "data": {"b": blob}}, headers=auth) for _ in range(50)]
        assert all(r.status_code == 201 for r in await asyncio.gather(*batch))
        sent += 50
        await fast.wait_seq(channel, sent)
    grown = _group_rss_mib(pid) - baseline
    assert grown < 60, f"API memory grew {grown:.0f} MiB"
    assert api.metric("realtime_connections_rejected_total", {"reason": "slow_consumer"}) == 1
    assert api.metric("realtime_active_connections") == 1
    assert_exactly(fast, channel, 1, sent)
    if serving == "gateway":
        # Closed, not lingering: a socket whose close frame could not leave is dropped, so it does
        # not hold its unsent frames, nor a SIGTERMed server in its graceful wait (uvicorn: 30 s).
        # Granian gives the app no handle to do this (docs/decisions/0004-gateway-server.md).
        slow_port, server_port = slow.ws.local_address[1], urlsplit(api.url).port
        assert server_port is not None and fast.ws.local_address[1] in await _peer_ports(server_port)
        await eventually(lambda: _peer_ports(server_port), lambda ports: slow_port not in ports, timeout=10)
    await fast.close()
    slow.ws.transport.abort()
    api.stop()


async def _peer_ports(server_port: int) -> set[int]:
    """Client ports of the open TCP connections whose local end is ``server_port``."""
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                local, remote = line.split()[1:3]
                if int(local.rsplit(":", 1)[1], 16) == server_port:
                    ports.add(int(remote.rsplit(":", 1)[1], 16))
    return ports
