"""The flush batcher in-process, on real Redis and Postgres: a flush that finds its draft leased
by another batch of the same process waits for that batch's end (no lease polling), then writes
the newer version; nothing is written twice at once and nothing is left behind.

The first batch is held inside its Postgres write by a gate around ``FlushBatcher._write`` (the
write itself is real), and the store's claims and lease polls are observed (not replaced): that is
what makes the two batches overlap on demand and shows how the second one waited.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import psycopg
import pytest

from app import autosave
from app.autosave.flush import FlushBatcher
from app.autosave.service import AutosaveService, SaveRequest, write_delay
from app.config import load
from app.platform import Platform
from app.queue.names import AUTOSAVE
from tests.support.processes import TEST_SECRET

WAIT_S = 10.0


@pytest.fixture
async def platform(migrated: str, fresh_redis_url: Callable[[], str]) -> AsyncIterator[Platform]:
    settings = load({"DATABASE_URL": migrated, "REDIS_URL": fresh_redis_url(), "JWT_SECRET": TEST_SECRET,
                     "DRAFTWIRE_ENV": "test", "AUTOSAVE_FLUSH_DELAY": "1s"})
    platform = Platform.create(settings)
    await platform.open()
    yield platform
    await platform.close()


@pytest.fixture
def drafts(platform: Platform) -> AutosaveService:
    return autosave.service(platform)


def _request(draft_id: str | None, title: str, base: int | None) -> SaveRequest:
    payload = json.dumps({"text": title})
    return SaveRequest(draft_id=draft_id, title=title, payload_json=payload, payload_bytes=len(payload),
                       base_version=base)


async def _row_version(conn: psycopg.AsyncConnection[Any], draft_id: str) -> tuple[int, int]:
    cur = await conn.execute("SELECT version FROM spec_drafts WHERE id = %s", (draft_id,))
    row = await cur.fetchone()
    cur = await conn.execute("SELECT count(*) FROM channel_events WHERE channel = %s", (f"draft:{draft_id}",))
    writes = await cur.fetchone()
    assert row is not None and writes is not None
    return int(row[0]), int(writes[0])


async def test_a_flush_waits_for_its_own_processs_batch_then_writes_the_newer_version(
    platform: Platform, drafts: AutosaveService, owner_conn: psycopg.AsyncConnection[Any], user_id: str
) -> None:
    batcher = FlushBatcher(db=platform.db, store=drafts.store, events=platform.events,
                           batch_size=25, flush_delay=1.0, queue=platform.queues[AUTOSAVE])
    first = await drafts.save(user_id, _request(None, "v1", None))

    gate, entered = asyncio.Event(), asyncio.Event()
    real_write = batcher._write
    polled: list[list[str]] = []
    real_poll = batcher._await_leases

    async def held_write(claimed: list[Any], carrier: dict[str, str], **kwargs: Any) -> bool:
        if not entered.is_set():
            entered.set()
            await gate.wait()  # batch A stays inside its write until the test lets it go
        return await real_write(claimed, carrier, **kwargs)

    async def observed_poll(ids: list[str], timeout: float = 20.0) -> None:
        polled.append(ids)
        await real_poll(ids, timeout)

    claims: list[Any] = []
    b_was_refused = asyncio.Event()
    real_claim = batcher.store.claim

    async def observed_claim(*args: Any, **kwargs: Any) -> Any:
        got = await real_claim(*args, **kwargs)
        claims.append(got)
        if len(claims) == 2:  # B's first claim: the draft is A's
            b_was_refused.set()
        return got

    batcher.store.claim = observed_claim  # type: ignore[method-assign]
    batcher._write = held_write  # type: ignore[method-assign]
    batcher._await_leases = observed_poll  # type: ignore[method-assign]
    batcher.start()
    try:
        flush_a = asyncio.create_task(batcher.flush(first.draft_id))
        await asyncio.wait_for(entered.wait(), WAIT_S)
        assert first.draft_id in batcher._writing  # A holds the lease

        second = await drafts.save(user_id, _request(first.draft_id, "v2", 1))
        assert second.version == 2
        flush_b = asyncio.create_task(batcher.flush(first.draft_id))
        await asyncio.wait_for(b_was_refused.wait(), WAIT_S)
        assert first.draft_id not in claims[1].leased, "B got the lease A holds"
        await asyncio.sleep(0)  # let B reach its wait
        assert not flush_b.done(), "B finished while A still held the draft"

        gate.set()
        await asyncio.wait_for(asyncio.gather(flush_a, flush_b), WAIT_S)
    finally:
        await batcher.stop()

    assert polled == [], "B polled the lease in Redis instead of waiting for A in-process"
    assert batcher._writing == {}, "a finished batch left its drafts registered"
    version, writes = await _row_version(owner_conn, first.draft_id)
    assert (version, writes) == (2, 2)  # A wrote v1, B the newer v2: nothing skipped, nothing twice
    assert not await drafts.store.redis.exists(f"dw:autosave:flushing:{first.draft_id}")


async def test_a_batch_never_waits_while_it_holds_leases(
    platform: Platform, drafts: AutosaveService, owner_conn: psycopg.AsyncConnection[Any], user_id: str
) -> None:
    """A batch that finds one of its drafts held by another batch first writes (and releases) the
    drafts it leased, then waits for the rest. Waiting while holding leases let two batches that
    had filled themselves with each other's drafts wait on each other until LEASE_WAIT_S ran out,
    stalling every flush of the worker for 20 s (seen under the peer driver at 300 saves/s)."""
    batcher = FlushBatcher(db=platform.db, store=drafts.store, events=platform.events,
                           batch_size=25, flush_delay=0.0, queue=platform.queues[AUTOSAVE])
    x = await drafts.save(user_id, _request(None, "x", None))
    y = await drafts.save(user_id, _request(None, "y", None))

    gate = asyncio.Event()
    writes: list[set[str]] = []
    wrote = [asyncio.Event(), asyncio.Event()]
    real_write = batcher._write

    async def held_write(claimed: list[Any], carrier: dict[str, str], **kwargs: Any) -> bool:
        index = len(writes)
        writes.append({s.draft_id for s in claimed})
        if index < len(wrote):
            wrote[index].set()
        if index == 0:
            await gate.wait()  # batch A (x, and y by fill) stays inside its write
        return await real_write(claimed, carrier, **kwargs)

    batcher._write = held_write  # type: ignore[method-assign]
    batcher.start()
    try:
        flush_a = asyncio.create_task(batcher.flush(x.draft_id))
        await asyncio.wait_for(wrote[0].wait(), WAIT_S)
        assert writes[0] == {x.draft_id, y.draft_id}, "A did not fill itself with the other due draft"

        w = await drafts.save(user_id, _request(None, "w", None))
        flush_y = asyncio.create_task(batcher.flush(y.draft_id))  # one batch B: y (A's) and w (free)
        flush_w = asyncio.create_task(batcher.flush(w.draft_id))
        await asyncio.wait_for(wrote[1].wait(), WAIT_S)  # B writes w while A still holds y
        assert writes[1] == {w.draft_id}
        await asyncio.wait_for(flush_w, WAIT_S)
        assert not await drafts.store.redis.exists(f"dw:autosave:flushing:{w.draft_id}"), "B kept w's lease"
        assert not flush_y.done() and not flush_a.done()

        gate.set()
        await asyncio.wait_for(asyncio.gather(flush_a, flush_y), WAIT_S)
    finally:
        await batcher.stop()

    assert batcher._writing == {}
    for draft in (x, y, w):
        assert (await _row_version(owner_conn, draft.draft_id))[0] == 1
        assert not await drafts.store.redis.exists(f"dw:autosave:flushing:{draft.draft_id}")


async def test_a_job_whose_draft_is_already_written_takes_no_lease(
    platform: Platform, drafts: AutosaveService, owner_conn: psycopg.AsyncConnection[Any], user_id: str
) -> None:
    """A flush job whose draft another batch already wrote (it filled itself with the due draft
    while this job was running) finds the draft clean: no lease, no write, one round trip."""
    batcher = FlushBatcher(db=platform.db, store=drafts.store, events=platform.events,
                           batch_size=25, flush_delay=0.0, queue=platform.queues[AUTOSAVE])
    saved = await drafts.save(user_id, _request(None, "v1", None))
    claims: list[Any] = []
    real_claim = batcher.store.claim

    async def observed_claim(*args: Any, **kwargs: Any) -> Any:
        claims.append(await real_claim(*args, **kwargs))
        return claims[-1]

    releases: list[Any] = []
    real_release = batcher.store.release

    async def observed_release(*args: Any) -> None:
        releases.append(args)
        await real_release(*args)

    batcher.store.claim = observed_claim  # type: ignore[method-assign]
    batcher.store.release = observed_release  # type: ignore[method-assign]
    batcher.start()
    try:
        await asyncio.wait_for(batcher.flush(saved.draft_id), WAIT_S)  # writes v1
        await asyncio.wait_for(batcher.flush(saved.draft_id), WAIT_S)  # the late job: nothing to do
        assert claims[1].leased == {} and claims[1].clean == {saved.draft_id}
        newer = await drafts.save(user_id, _request(saved.draft_id, "v2", 1))
        await asyncio.wait_for(batcher.flush(saved.draft_id), WAIT_S)  # dirty again: leased, written
        assert set(claims[2].leased) == {saved.draft_id} and not claims[2].clean
    finally:
        await batcher.stop()
    assert newer.version == 2
    assert await _row_version(owner_conn, saved.draft_id) == (2, 2)  # each version written once
    assert not await drafts.store.leased([saved.draft_id])
    assert releases == [], "leases were given back in a call of their own, not with the write's bookkeeping"


async def test_a_flush_waits_again_when_its_draft_is_leased_again(
    platform: Platform, drafts: AutosaveService, owner_conn: psycopg.AsyncConnection[Any], user_id: str
) -> None:
    """A job whose draft another worker holds waits for it, then claims again; if a third batch
    took the still-dirty draft in between (a newer save kept it dirty), the job waits again
    instead of returning with its draft unwritten."""
    batcher = FlushBatcher(db=platform.db, store=drafts.store, events=platform.events,
                           batch_size=25, flush_delay=0.0, queue=platform.queues[AUTOSAVE])
    saved = await drafts.save(user_id, _request(None, "v1", None))
    lease = f"dw:autosave:flushing:{saved.draft_id}"
    redis = drafts.store.redis
    await redis.set(lease, "worker-a", px=60_000)  # another worker's batch holds the draft
    claims: list[Any] = []
    polls: list[asyncio.Event] = [asyncio.Event(), asyncio.Event()]
    real_claim, real_poll = batcher.store.claim, batcher._await_leases

    async def observed_claim(*args: Any, **kwargs: Any) -> Any:
        if len(claims) == 1:  # A let go; before this job claims again, worker B takes the draft
            await redis.set(lease, "worker-b", px=60_000)
        claims.append(await real_claim(*args, **kwargs))
        return claims[-1]

    async def observed_poll(ids: list[str], timeout: float = 20.0) -> None:
        polls[min(len([p for p in polls if p.is_set()]), 1)].set()
        await real_poll(ids, timeout)

    batcher.store.claim = observed_claim  # type: ignore[method-assign]
    batcher._await_leases = observed_poll  # type: ignore[method-assign]
    batcher.start()
    try:
        flush = asyncio.create_task(batcher.flush(saved.draft_id))
        await asyncio.wait_for(polls[0].wait(), WAIT_S)
        await redis.delete(lease)  # A is done (the draft stays dirty: a newer save arrived)
        second_wait = asyncio.create_task(polls[1].wait())
        done, _ = await asyncio.wait({flush, second_wait}, timeout=WAIT_S, return_when=asyncio.FIRST_COMPLETED)
        assert second_wait in done and not flush.done(), "the job returned while B still held its unwritten draft"
        assert claims[1].leased == {} and not claims[1].clean
        await redis.delete(lease)  # B is done
        await asyncio.wait_for(flush, WAIT_S)
    finally:
        await batcher.stop()
    assert await _row_version(owner_conn, saved.draft_id) == (1, 1)


def test_a_flush_is_due_its_own_time_before_the_window_ends() -> None:
    """The job is scheduled 20 ms early so that the row lands when AUTOSAVE_FLUSH_DELAY ends;
    never more than a tenth of a short window early."""
    assert write_delay(1.0) == pytest.approx(0.98)
    assert write_delay(0.1) == pytest.approx(0.09)
    assert write_delay(0.0) == 0.0


async def test_a_save_is_scheduled_for_the_lead_not_the_whole_window(drafts: AutosaveService) -> None:
    """The job a save enqueues is due at the save's time plus ``write_delay`` (read back from SAQ)."""
    before = time.time()
    result = await drafts.save("lead-user", _request(None, "lead", None))
    job = await drafts.queue.job(result.job_id)
    assert job is not None
    delay = write_delay(drafts.settings.autosave_flush_delay)
    assert before + delay <= float(job.scheduled) <= time.time() + delay
