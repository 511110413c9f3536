"""Catch-up replay, live delivery and exactly-once ordering over real sockets (seed 002)."""

from __future__ import annotations

import asyncio
import time

import httpx
from redis.asyncio import Redis

from app.events import ANNOUNCE_PREFIX, Event
from tests.realtime.conftest import Realtime
from tests.realtime.support import Client, assert_exactly, channel_name, publish


async def test_replay_then_caught_up_then_live(rt_api: Realtime, http: httpx.AsyncClient, admin: str) -> None:
    """120 stored events replay in order (in pages), then caught_up, then live events: no duplicate."""
    channel = channel_name()
    await publish(http, rt_api.api_url, admin, channel, 120)
    client = await Client.open(rt_api.url, admin)
    await client.subscribe(channel)
    subscribed = await client.wait_op("subscribed", channel)
    assert subscribed["headSeq"] == 120
    caught = await client.wait_op("caught_up", channel)
    assert caught["seq"] == 120 and caught["replayed"] == 120 and caught["durationMs"] >= 0
    ops = [f["op"] for f in client.frames]
    assert ops[0] == "subscribed" and ops.index("caught_up") > max(i for i, op in enumerate(ops) if op == "events")
    await publish(http, rt_api.api_url, admin, channel, 5)
    await client.wait_seq(channel, 125)
    assert_exactly(client, channel, 1, 125)
    # Live events come one `event` frame each, or (when they queued behind a write in flight)
    # several in one `events` frame: every element counts as one event.
    after = client.frames[ops.index("caught_up") + 1:]
    live = [f for f in after if f["op"] == "event"]
    merged = [e for f in after if f["op"] == "events" for e in f["events"]]
    assert sorted([f["seq"] for f in live] + [e["seq"] for e in merged]) == [121, 122, 123, 124, 125]
    assert live, "sequential publishes each found the socket idle, so at least one went alone"
    assert set(live[0]) == {"op", "channel", "seq", "type", "data", "ts"} and live[0]["ts"].endswith("Z")
    assert all(set(e) == {"seq", "type", "data", "ts"} for e in merged)
    await client.close()


async def test_resume_after_since_seq(rt_api: Realtime, http: httpx.AsyncClient, admin: str) -> None:
    """sinceSeq=N replays exactly the events after N."""
    channel = channel_name()
    await publish(http, rt_api.api_url, admin, channel, 10)
    client = await Client.open(rt_api.url, admin)
    await client.subscribe(channel, since=7)
    caught = await client.wait_op("caught_up", channel)
    assert caught["replayed"] == 3
    assert_exactly(client, channel, 8, 10)
    await client.close()


async def test_publish_during_replay_exactly_once(rt_api: Realtime, http: httpx.AsyncClient, admin: str) -> None:
    """1,000 events published while 20 clients are mid-replay arrive exactly once, in order."""
    channel = channel_name()
    await publish(http, rt_api.api_url, admin, channel, 300)

    async def publisher() -> None:  # 10 concurrent streams of 70 -> 700 more, racing the replays
        await asyncio.gather(*(publish(http, rt_api.api_url, admin, channel, 70) for _ in range(10)))

    clients = await asyncio.gather(*(Client.open(rt_api.url, admin) for _ in range(20)))
    pub = asyncio.create_task(publisher())
    for c in clients:
        await c.subscribe(channel)
    await pub
    for c in clients:
        await c.wait_seq(channel, 1000)
    for c in clients:
        assert_exactly(c, channel, 1, 1000)
        await c.close()


async def _announce_at_once(redis: Redis, channel: str, seqs: list[int | None]) -> None:
    """Announce ``seqs`` (None: a garbage message) in one pipeline: one write to Redis, so
    Redis hands them to the stream server together, in one read."""
    async with redis.pipeline(transaction=False) as pipe:
        for seq in seqs:
            message = b"not an announcement" if seq is None else Event(
                channel, seq, "job.progress", {"i": seq}, "2026-12-02T00:00:00.000Z").announcement({}, time.time())
            pipe.publish(ANNOUNCE_PREFIX + channel, message)
        await pipe.execute()


async def test_events_that_arrive_together_leave_together(rt_api: Realtime, redis: Redis, admin: str) -> None:
    """20 events announced in one burst reach an idle, live socket in order and in at most three
    frames (one ``events`` frame under the gateway's direct writes; under Granian the first alone,
    the rest merged behind it): a process that fell behind does not pay a socket write per event."""
    channel = channel_name()
    client = await Client.open(rt_api.url, admin)
    await client.subscribe(channel)
    await client.wait_op("caught_up", channel)
    before = len(client.frames)
    await _announce_at_once(redis, channel, list(range(1, 21)))
    await client.wait_seq(channel, 20)
    assert_exactly(client, channel, 1, 20)
    frames = client.frames[before:]
    assert len(frames) <= 3, [f["op"] for f in frames]
    await client.close()


async def test_a_burst_out_of_order_and_with_garbage_is_delivered_in_order(
        rt_api: Realtime, redis: Redis, admin: str) -> None:
    """A burst whose seqs arrive out of order (concurrent publishers announce in any order), with a
    message that is not an announcement in the middle: every event once, in seq order."""
    channel = channel_name()
    client = await Client.open(rt_api.url, admin)
    await client.subscribe(channel)
    await client.wait_op("caught_up", channel)
    await _announce_at_once(redis, channel, [1, 2, 4, None, 3, 5, 6])
    await client.wait_seq(channel, 6)
    assert_exactly(client, channel, 1, 6)
    await _announce_at_once(redis, channel, [7])
    await client.wait_seq(channel, 7)
    assert_exactly(client, channel, 1, 7)
    await client.close()


async def test_a_token_in_the_query_string_never_reaches_the_logs(rt_api: Realtime, admin: str) -> None:
    """Browsers pass the token as ``?token=`` on /ws; the server's handshake line (uvicorn logs
    ``"WebSocket /ws?..." [accepted]`` at info) must not carry it. The serving process runs at
    LOG_LEVEL=INFO here."""
    channel = channel_name()
    client = await Client.open(rt_api.url, admin)  # the token in the query string
    await client.subscribe(channel)
    await client.wait_op("caught_up", channel)
    await client.close()
    signature = admin.rsplit(".", 1)[-1]
    text = rt_api.streams.log_path.read_text(errors="replace")
    assert text, "the serving process logged nothing at all: this test would prove nothing"
    assert signature not in text
