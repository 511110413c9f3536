"""A stalled client (stops reading) and a slow one (reads a frame every 50 ms) on a busy channel:
the API's memory stays flat and the other subscribers' delivery latency does not move."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from datetime import datetime

import httpx
from websockets.asyncio.client import ClientConnection, connect

from devstack.stats import percentile
from tests.chaos.conftest import FULL, ChaosStack, record
from tests.realtime.support import Client, channel_name, ws_url
from tests.realtime.test_faults import _group_rss_mib

SUBSCRIBERS = 50 if FULL else 10
EVENTS = 2000 if FULL else 400
BLOB = "x" * 20_000
"""Each event carries 20 KB, so a client that does not read falls behind quickly."""
RSS_BOUND_MIB = 60.0


class Timed:
    """A subscriber that records, per event, publish-to-receive latency in seconds."""

    def __init__(self, ws: ClientConnection, channel: str) -> None:
        self.ws, self.channel = ws, channel
        self.latency: list[float] = []
        self.last = 0
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        with contextlib.suppress(Exception):
            async for raw in self.ws:
                frame = json.loads(raw)
                now = time.time()
                events = frame.get("events", [frame]) if frame.get("op") in ("event", "events") else []
                for event in events:
                    self.latency.append(now - datetime.fromisoformat(event["ts"]).timestamp())
                    self.last = event["seq"]


async def _burst(http: httpx.AsyncClient, base: str, admin: str, channel: str, n: int) -> int:
    """``n`` events published 20 at a time; the last seq."""
    url = f"{base}/api/admin/channels/{channel}/events"
    last = 0
    for _ in range(n // 20):
        answers = await asyncio.gather(*(http.post(url, json={"type": "chaos.blob", "data": {"b": BLOB}},
                                                   headers={"Authorization": f"Bearer {admin}"}) for _ in range(20)))
        assert all(r.status_code == 201 for r in answers)
        last = max(last, *(int(r.json()["seq"]) for r in answers))
        await asyncio.sleep(0.01)
    return last


async def _phase(stack: ChaosStack, http: httpx.AsyncClient, base: str, admin: str, channel: str,
                 subs: list[Timed]) -> float:
    for s in subs:
        s.latency.clear()
    last = await _burst(http, base, admin, channel, EVENTS)
    deadline = time.monotonic() + 60
    while any(s.last < last for s in subs):
        assert time.monotonic() < deadline, "subscribers did not receive the burst"
        await asyncio.sleep(0.1)
    return percentile([x for s in subs for x in s.latency], 95)


async def test_stalled_and_slow_clients_do_not_hurt_others(chaos: ChaosStack, http: httpx.AsyncClient) -> None:
    """Same burst twice to SUBSCRIBERS readers: alone, then with a stalled and a slow client on
    the channel. The readers' p95 latency stays within 2x (or +50 ms) of the baseline and the
    API's resident memory grows less than RSS_BOUND_MIB."""
    api = chaos.spawn("api")
    admin = chaos.token("chaos-admin", admin=True)
    channel = channel_name()
    subs = []
    for i in range(SUBSCRIBERS):
        ws = await connect(ws_url(api.url, chaos.token(f"chaos-reader-{i}", admin=True)), max_size=None)
        await ws.send(json.dumps({"op": "subscribe", "channel": channel, "sinceSeq": 0}))
        subs.append(Timed(ws, channel))
    await asyncio.sleep(0.5)
    baseline = await _phase(chaos, http, api.url, admin, channel, subs)
    rss_before = _group_rss_mib(api.pid)
    stalled = await Client.open(api.url, chaos.token("chaos-stalled", admin=True), max_queue=1)
    await stalled.subscribe(channel, since=await _head(http, api.url, admin, channel))
    await stalled.wait_op("caught_up", channel)
    stalled._reader.cancel()  # stops reading: kernel buffers fill, then the server's outbox
    slow_ws = await connect(ws_url(api.url, chaos.token("chaos-slow", admin=True)), max_size=None, max_queue=1)
    await slow_ws.send(json.dumps({"op": "subscribe", "channel": channel, "sinceSeq": 0}))

    async def slow_reader() -> int:
        got = 0
        with contextlib.suppress(Exception):
            async for _ in slow_ws:
                got += 1
                await asyncio.sleep(0.05)
        return got

    slow = asyncio.create_task(slow_reader())
    with_faults = await _phase(chaos, http, api.url, admin, channel, subs)
    rss_after = _group_rss_mib(api.pid)
    closed_slow = api.metric("realtime_connections_rejected_total", {"reason": "slow_consumer"})
    record("slow_clients", subscribers=SUBSCRIBERS, events_per_phase=EVENTS, event_bytes=len(BLOB),
           p95_latency_alone_ms=round(baseline * 1000, 1), p95_latency_with_stalled_and_slow_ms=round(with_faults * 1000, 1),
           rss_before_mib=round(rss_before, 1), rss_growth_mib=round(rss_after - rss_before, 1),
           closed_as_slow_consumer=closed_slow)
    assert rss_after - rss_before < RSS_BOUND_MIB
    assert with_faults <= max(2 * baseline, baseline + 0.05), (baseline, with_faults)
    assert closed_slow >= 1, "the stalled client was never closed"
    slow.cancel()
    stalled.ws.transport.abort()
    with contextlib.suppress(Exception):
        await slow_ws.close()
    for s in subs:
        await s.ws.close()


async def _head(http: httpx.AsyncClient, base: str, admin: str, channel: str) -> int:
    """The channel's last seq (publishing one marker event)."""
    r = await http.post(f"{base}/api/admin/channels/{channel}/events", json={"type": "chaos.mark", "data": {}},
                        headers={"Authorization": f"Bearer {admin}"})
    return int(r.json()["seq"])
