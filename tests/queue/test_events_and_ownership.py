"""The event write path under concurrency, and who owns a channel (for the realtime gateway)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import psycopg
import pytest

from app import jobs
from app.config import Settings
from app.platform import Platform
from app.roles.api import api_parts
from tests.queue.conftest import auth, client, eventually
from tests.support.processes import TEST_SECRET, ServiceProcess


@pytest.fixture
async def runtime(migrated: str, shared_redis_url: str) -> AsyncIterator[Platform]:
    """The API's platform with its features' channel owners registered, as `draftwire api` has it."""
    platform = Platform.create(Settings(env="test", database_url=migrated, redis_url=shared_redis_url,
                                        jwt_secret=TEST_SECRET))
    api_parts(platform)
    await platform.db.open(wait=True)
    yield platform
    await platform.db.close()
    await platform.redis.aclose()


async def channel_owner(platform: Platform, channel: str) -> str | None:
    return await platform.owners.owner(channel)


async def test_twenty_concurrent_publishers_gap_free(
    runtime: Platform, owner_conn: psycopg.AsyncConnection[Any]
) -> None:
    """20 publishers appending 10 events each to one channel at the same time produce seqs
    1..200, each exactly once, every publisher's own events in its order."""
    channel = f"job:test-{uuid.uuid4().hex}"

    async def publisher(n: int) -> list[int]:
        return [(await runtime.events.publish(channel, "test.tick", {"p": n, "i": i})).seq for i in range(10)]

    seqs = await asyncio.gather(*(publisher(n) for n in range(20)))
    assert all(own == sorted(own) for own in seqs)
    cur = await owner_conn.execute("SELECT seq, data FROM channel_events WHERE channel = %s ORDER BY seq", (channel,))
    rows = await cur.fetchall()
    assert [r[0] for r in rows] == list(range(1, 201))
    assert sorted(s for own in seqs for s in own) == list(range(1, 201))
    cur = await owner_conn.execute("SELECT head_seq FROM channel_heads WHERE channel = %s", (channel,))
    assert (await cur.fetchone()) == (200,)


async def test_channel_owner(
    runtime: Platform, qapi: ServiceProcess, qworker: ServiceProcess, token: Callable[..., str]
) -> None:
    """channel_owner names the owner of draft:<id> (before and after the flush), job:build:<id>
    and the autosave job channel; unknown, malformed or mismatched channels give None."""
    user = f"user-{uuid.uuid4().hex[:8]}"
    headers = auth(token(user))
    async with client(qapi.url) as http:
        saved = (await http.post("/api/autosave", json={"title": "t", "payload": {"a": 1}}, headers=headers)).json()
        draft_id = saved["draftId"]

        async def persisted() -> bool:
            return bool((await http.get(f"/api/drafts/{draft_id}", headers=headers)).json()["persisted"])

        await eventually(persisted, bool)
    assert await channel_owner(runtime, f"draft:{draft_id}") == user
    job_id = f"build:{uuid.uuid4()}"
    await jobs.store(runtime).create(user, job_id, type_="build", queue="draft-build", draft_id=draft_id)
    assert await channel_owner(runtime, f"job:{job_id}") == user
    assert await channel_owner(runtime, f"job:{saved['jobId']}") == user
    await runtime.redis.delete(f"dw:draft:{draft_id}")  # Redis forgot it: Postgres still knows
    assert await channel_owner(runtime, f"draft:{draft_id}") == user

    for channel in [
        f"draft:{uuid.uuid4()}",
        "draft:not-a-uuid",
        f"job:build:{uuid.uuid4()}",
        f"job:draft:intruder:{draft_id}",
        "job:nonsense",
        "elsewhere:x",
        "job:" + "x" * 300,
    ]:
        assert await channel_owner(runtime, channel) is None, channel
