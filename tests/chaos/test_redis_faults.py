"""Redis killed (SIGKILL) and restarted: during a many-subscriber broadcast, and from its AOF with
drafts accepted but not yet flushed.

Persistence: the devstack Redis, like compose's, runs ``appendonly yes`` with the default
``appendfsync everysec``: a write acknowledged to the API is in the AOF file within about one
second. A kill -9 (or a crash of the host) can lose the writes of that last second; a save
acknowledged more than ~1 s before the kill survives. The AOF test waits AOF_FSYNC_S + margin.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import httpx

from tests.chaos.conftest import FULL, ChaosStack, Saver, eventually, record
from tests.realtime.support import assert_exactly, channel_name

SUBSCRIBERS = 200 if FULL else 20
EVENTS_BEFORE, EVENTS_DURING, EVENTS_AFTER = (300, 100, 300) if FULL else (40, 20, 40)
OUTAGE_S = 1.5
"""Redis is down this long: shorter than the gateway's first backoff step (2 s)."""
FIRST_BACKOFF_S = 2.0
AOF_FSYNC_S = 1.0


async def _publish(http: httpx.AsyncClient, base: str, admin: str, channel: str, n: int) -> int:
    last = 0
    for i in range(n):
        r = await http.post(f"{base}/api/admin/channels/{channel}/events", json={"type": "chaos.tick", "data": {"i": i}},
                            headers={"Authorization": f"Bearer {admin}"})
        assert r.status_code == 201, r.text
        last = int(r.json()["seq"])
    return last


async def _sql_publish(stack: ChaosStack, channel: str, n: int) -> None:
    """Events committed while Redis is down, as a worker's publish does (nobody announces them)."""
    import psycopg

    async with await psycopg.AsyncConnection.connect(stack.pg.url, autocommit=True) as conn:
        for _ in range(n):
            await conn.execute("SELECT publish_event(%s, 'chaos.tick', '{}'::jsonb)", (channel,))


async def test_redis_killed_during_broadcast(chaos: ChaosStack, saver: Saver, http: httpx.AsyncClient) -> None:
    """SUBSCRIBERS sockets follow one channel; Redis is SIGKILLed mid-broadcast and restarted
    OUTAGE_S later. Every subscriber ends with every seq exactly once; live delivery is back
    within the first backoff step plus the backfill; meanwhile /readyz reports redis, autosaves
    get 503 queue_unavailable, and drafts accepted before the kill all reach Postgres."""
    api = chaos.spawn("api")
    chaos.spawn("worker")
    admin = chaos.token("chaos-admin", admin=True)
    channel = channel_name()
    clients = await chaos.subscribers(api.url, SUBSCRIBERS, channel)
    user = f"chaos-{uuid.uuid4().hex[:8]}"
    for _ in range(20):
        await saver.save(api.url, f"{user}-{uuid.uuid4().hex[:4]}")
    last = await _publish(http, api.url, admin, channel, EVENTS_BEFORE)
    await asyncio.gather(*(c.wait_seq(channel, last, timeout=60) for c in clients))
    await asyncio.sleep(AOF_FSYNC_S + 0.5)  # the saves above are on disk (appendfsync everysec)

    assert chaos.redis.proc is not None
    chaos.redis.proc.kill()
    chaos.redis.proc.wait()
    killed = time.monotonic()
    ready = await http.get(f"{api.url}/readyz")
    ready_s = time.monotonic() - killed
    refused = await http.post(f"{api.url}/api/autosave", json={"title": "t", "payload": {}}, headers=chaos.headers(user))
    await _sql_publish(chaos, channel, EVENTS_DURING)
    await asyncio.sleep(max(0.0, OUTAGE_S - (time.monotonic() - killed)))
    chaos.redis.start()  # same port and directory: it reloads its AOF
    restarted = time.monotonic()
    # Live delivery back: an event published now reaches every subscriber.
    probe = await eventually("the admin publish accepted again",
                             lambda: http.post(f"{api.url}/api/admin/channels/{channel}/events",
                                               json={"type": "chaos.tick", "data": {}},
                                               headers={"Authorization": f"Bearer {admin}"}),
                             lambda r: r.status_code == 201, 15, every=0.05)
    probe_seq = int(probe.json()["seq"])
    await asyncio.gather(*(c.wait_seq(channel, probe_seq, timeout=30) for c in clients))
    live_back_s = time.monotonic() - restarted
    last = await _publish(http, api.url, admin, channel, EVENTS_AFTER)
    await asyncio.gather(*(c.wait_seq(channel, last, timeout=60) for c in clients))
    gaps = sum(len(c.violations) for c in clients)
    missing = sum(len(set(range(1, last + 1)) - set(c.seqs.get(channel, []))) for c in clients)
    duplicates = sum(len(c.seqs.get(channel, [])) - len(set(c.seqs.get(channel, []))) for c in clients)
    persisted_s = await saver.all_persisted(within=60)
    lost, _ = await saver.losses()
    reconnects = api.metric("realtime_redis_reconnects_total")
    logged = any(line.get("msg") == "redis_reconnecting" for line in api.logs())
    record("redis_kill_broadcast", subscribers=SUBSCRIBERS, events=last, during_outage=EVENTS_DURING,
           outage_s=OUTAGE_S, gaps=gaps, missing=missing, duplicates=duplicates,
           live_back_after_restart_s=round(live_back_s, 2), readyz=ready.status_code, readyz_s=round(ready_s, 2),
           readyz_body=ready.json(), autosave_during=f"{refused.status_code} {refused.json().get('error')}",
           reconnects=reconnects, reconnect_logged=logged, drafts_before=len(saver.latest), drafts_lost=lost,
           persisted_s=round(persisted_s, 1))
    assert gaps == missing == duplicates == 0
    for c in clients:
        assert_exactly(c, channel, 1, last)
    assert ready.status_code == 503 and "redis ping failed" in ready.text and ready_s < 1.0
    assert refused.status_code == 503 and refused.json()["error"] == "queue_unavailable"
    assert live_back_s < FIRST_BACKOFF_S + 3.0, live_back_s
    assert reconnects >= 1 and logged
    assert lost == 0
    for c in clients:
        await c.close()


async def test_redis_aof_restart_keeps_unflushed_drafts(chaos: ChaosStack, saver: Saver) -> None:
    """With no worker running, drafts are accepted (only in Redis); AOF_FSYNC_S later Redis is
    SIGKILLed and restarted from its AOF; a worker started afterwards writes every one of them to
    Postgres at its last accepted version."""
    api = chaos.spawn("api")
    users = [f"chaos-{uuid.uuid4().hex[:8]}" for _ in range(50 if FULL else 10)]
    for user in users:
        draft = (await saver.save(api.url, user)).json()["draftId"]
        for _ in range(2):
            await saver.save(api.url, user, draft)
    assert await chaos.stored(list(saver.latest)) == {}, "nothing may be flushed before the kill"
    await asyncio.sleep(AOF_FSYNC_S + 0.5)
    assert chaos.redis.proc is not None
    chaos.redis.proc.kill()
    chaos.redis.proc.wait()
    chaos.redis.start()
    started = time.monotonic()
    chaos.spawn("worker")
    persisted_s = await saver.all_persisted(within=60)
    lost, rolled_back = await saver.losses()
    record("redis_aof_kill9", drafts=len(saver.latest), saves=3 * len(users), lost=lost, rolled_back=rolled_back,
           fsync="appendfsync everysec", waited_before_kill_s=AOF_FSYNC_S + 0.5,
           flushed_after_worker_start_s=round(time.monotonic() - started, 1), persisted_s=round(persisted_s, 1))
    assert lost == 0 and rolled_back == 0
