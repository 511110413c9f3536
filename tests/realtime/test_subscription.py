"""``Subscription`` driven by hand: announcements are handed to ``on_live`` in the order a test
chooses, a real Postgres-backed :class:`EventReader` answers the backfills, and a small in-test
sink records what would have been written. No Redis, no sockets, no timing of anyone else's:
the pump is paused inside ``put_page`` (a gate the test opens) when a test needs announcements
to arrive while it catches up.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest
from prometheus_client import REGISTRY

from app.db import Database
from app.events import Event, EventReader, StoredEvent, decode_announcement, utc_iso_ms
from app.realtime import protocol, subscription
from app.realtime.outbox import LiveEvent
from app.realtime.subscription import HELD_LIMIT, REORDER_GRACE_S, Subscription

WAIT_S = 20.0
"""Bound on every wait (the machine is shared; a pump round trip takes milliseconds)."""
PAGE = 100

OwnerConn = psycopg.AsyncConnection[tuple[Any, ...]]


class Sink:
    """What ``Subscription`` calls (its ``Sink`` protocol), recording every seq it is given.

    ``hold_pages()`` makes the next ``put_page`` wait until ``release()``; ``paused`` is set
    once the pump is waiting there, so a test knows the catch-up is in flight."""

    def __init__(self) -> None:
        self.delivered: list[tuple[str, int]] = []
        """(how, seq) in delivery order: ``page`` from Postgres, ``live`` from an announcement."""
        self.caught_up_calls: list[tuple[int, int]] = []
        self.paused = asyncio.Event()
        self._gate: asyncio.Event | None = None
        self._progress = asyncio.Event()
        self.direct = False
        """True: ``write_now`` takes every frame (a WebSocket with an idle, direct writer)."""
        self.frames: list[bytes] = []

    def hold_pages(self) -> None:
        self._gate = asyncio.Event()
        self.paused.clear()

    def release(self) -> None:
        assert self._gate is not None
        self._gate.set()
        self._gate = None

    def push_event(self, event: LiveEvent) -> bool:
        self.delivered.append(("live", event.seq))
        self._progress.set()
        return True

    def write_now(self, frame: bytes) -> bool:
        if self.direct:
            self.frames.append(frame)
        return self.direct

    async def put_page(self, channel: str, rows: list[StoredEvent]) -> bool:
        if self._gate is not None:
            self.paused.set()
            await self._gate.wait()
        self.delivered.extend(("page", row.seq) for row in rows)
        self._progress.set()
        return True

    def caught_up(self, sub: Subscription, replayed: int, started: float) -> None:
        self.caught_up_calls.append((sub.last, replayed))

    @property
    def seqs(self) -> list[int]:
        return [seq for _, seq in self.delivered]

    def via(self, how: str) -> list[int]:
        return [seq for kind, seq in self.delivered if kind == how]

    async def wait_last(self, seq: int) -> None:
        """Until something at or past ``seq`` was delivered (bounded)."""
        try:
            async with asyncio.timeout(WAIT_S):
                while not (self.delivered and self.delivered[-1][1] >= seq):
                    self._progress.clear()  # one loop: nothing is delivered between check and clear
                    await self._progress.wait()
        except TimeoutError:
            last = self.delivered[-1] if self.delivered else None
            raise AssertionError(f"seq {seq} not delivered within {WAIT_S:.0f} s; last was {last}") from None


@pytest.fixture
async def reader(migrated: str) -> AsyncIterator[EventReader]:
    db = Database(url=migrated, statement_timeout=10)
    await db.open(wait=True)
    yield EventReader(db, page_size=PAGE)
    await db.close()


def channel() -> str:
    return f"job:sub-{uuid.uuid4().hex}"


async def commit(conn: OwnerConn, chan: str, n: int) -> list[Event]:
    """Append ``n`` events in one statement (as ``publish_event`` does for every publisher)."""
    cur = await conn.execute(
        "SELECT p.seq, p.created_at FROM generate_series(1, %s) AS g,"
        " LATERAL publish_event(%s, 'test.step', jsonb_build_object('i', g)) AS p ORDER BY p.seq",
        (n, chan),
    )
    return [Event(chan, int(seq), "test.step", {}, utc_iso_ms(ts)) for seq, ts in await cur.fetchall()]


def announced(event: Event) -> LiveEvent:
    """The event as the gateway's dispatcher hands it over: encoded for Redis, decoded, framed."""
    ann = decode_announcement(event.announcement({}, time.time()))
    frame = protocol.event_frame(ann.channel, ann.seq, ann.type, ann.data, ann.ts)
    return LiveEvent(ann.channel, ann.seq, ann.type, ann.data, ann.ts, ann.pt, ann.trace, frame)


async def live_subscription(reader: EventReader, sink: Sink, chan: str, since: int = 0) -> Subscription:
    """A subscription that has replayed everything after ``since`` and is live."""
    sub = Subscription(sink, chan, since, reader)
    _, first = await reader.head_and_page(chan, since)
    sub.start(first, time.perf_counter())
    assert sub._task is not None
    await asyncio.wait_for(asyncio.shield(sub._task), WAIT_S)  # the replay pump has finished
    assert sub.live
    return sub


def gaps() -> float:
    value = REGISTRY.get_sample_value("realtime_sequence_gaps_total")
    assert value is not None
    return value


async def test_reorder_live_closes_within_grace(reader: EventReader, owner_conn: OwnerConn) -> None:
    """Live announcements 1, 3, 2 (two publishers announcing out of commit order) are written
    1, 2, 3 straight from the announcements: no Postgres read, no gap counted, live again."""
    chan, sink = channel(), Sink()
    sub = await live_subscription(reader, sink, chan)
    events = [announced(e) for e in await commit(owner_conn, chan, 3)]
    before = gaps()

    sub.on_live(events[0])
    sub.on_live(events[2])
    assert not sub.live, "a jump in seq stops live delivery"
    sub.on_live(events[1])

    assert sink.delivered == [("live", 1), ("live", 2), ("live", 3)]
    assert sub.live and sub.last == 3 and not sub.held
    assert gaps() == before
    await sub.stop()


async def test_reorder_gap_not_closed_is_read_from_postgres(reader: EventReader, owner_conn: OwnerConn) -> None:
    """A missing announcement that never comes (lost) is read from Postgres once the reorder grace
    is over; the held later ones follow in order, each seq exactly once, one gap counted."""
    chan, sink = channel(), Sink()
    sub = await live_subscription(reader, sink, chan)
    events = [announced(e) for e in await commit(owner_conn, chan, 5)]
    before = gaps()

    sub.on_live(events[0])
    for event in (events[4], events[2], events[3]):  # seq 2's announcement is lost
        sub.on_live(event)
    assert sink.seqs == [1]
    await sink.wait_last(5)

    assert sink.seqs == [1, 2, 3, 4, 5]
    assert 2 in sink.via("page"), "the lost seq came from Postgres"
    assert gaps() == before + 1
    assert sub.live and not sub.held
    assert REORDER_GRACE_S < WAIT_S
    await sub.stop()


async def test_reorder_while_catching_up(reader: EventReader, owner_conn: OwnerConn) -> None:
    """Announcements arriving out of order during the replay are held and written in seq order
    after the replayed page, the overlap skipped."""
    chan, sink = channel(), Sink()
    events = [announced(e) for e in await commit(owner_conn, chan, 2)]
    sub = Subscription(sink, chan, 0, reader)
    _, first = await reader.head_and_page(chan, 0)
    sink.hold_pages()
    sub.start(first, time.perf_counter())
    async with asyncio.timeout(WAIT_S):
        await sink.paused.wait()
    events += [announced(e) for e in await commit(owner_conn, chan, 4)]
    for i in (5, 1, 3, 2, 4, 0):  # seqs 6, 2, 4, 3, 5, 1
        sub.on_live(events[i])
    sink.release()
    await sink.wait_last(6)

    assert sink.delivered == [("page", 1), ("page", 2), ("live", 3), ("live", 4), ("live", 5), ("live", 6)]
    assert sink.caught_up_calls == [(2, 2)]
    assert sub.live and not sub.held
    await sub.stop()


async def test_overflow_while_catching_up_is_backfilled(reader: EventReader, owner_conn: OwnerConn) -> None:
    """More announcements than ``HELD_LIMIT`` arrive while the replay's last page is being written:
    the subscription holds at most ``HELD_LIMIT`` (memory bounded), drops the rest, and reads
    them from Postgres before going live: every seq exactly once, in order."""
    chan, sink = channel(), Sink()
    await commit(owner_conn, chan, 3)
    sub = Subscription(sink, chan, 0, reader)
    _, first = await reader.head_and_page(chan, 0)
    sink.hold_pages()
    sub.start(first, time.perf_counter())  # the whole channel fits this page: it is the last
    async with asyncio.timeout(WAIT_S):
        await sink.paused.wait()
    total = 3 + HELD_LIMIT + 250
    for event in await commit(owner_conn, chan, total - 3):
        sub.on_live(announced(event))
    assert len(sub.held) == HELD_LIMIT
    sink.release()
    await sink.wait_last(total)

    assert sink.seqs == list(range(1, total + 1))
    assert sink.via("page")[-1] == total, "the dropped announcements were read from Postgres"
    assert sub.live and not sub.held
    await sub.stop()


async def test_overflow_during_reorder_grace_is_backfilled(reader: EventReader, owner_conn: OwnerConn,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """A jump in seq while live, then more announcements than the hold limit, the missing one
    among the dropped: the hold stays bounded and, the grace over, Postgres fills everything in
    order, one gap counted. (The limit is lowered to 16 so the test stays small: while a reorder
    is open, each announcement re-sorts what is held.)"""
    monkeypatch.setattr(subscription, "HELD_LIMIT", 16)
    chan, sink = channel(), Sink()
    sub = await live_subscription(reader, sink, chan)
    events = [announced(e) for e in await commit(owner_conn, chan, 40)]
    before = gaps()
    for event in [*events[1:], events[0]]:  # seq 1 arrives last, when the hold is full
        sub.on_live(event)
    assert len(sub.held) == 16
    assert sink.seqs == []
    await sink.wait_last(40)

    assert sink.delivered == [("page", s) for s in range(1, 41)]
    assert gaps() == before + 1
    assert sub.live and not sub.held
    await sub.stop()


async def test_resync_backfills_from_last_delivered(reader: EventReader, owner_conn: OwnerConn) -> None:
    """After a Redis reconnect (``resync``), events committed while nothing was announced are read
    from Postgres after the last delivered seq, then live delivery resumes."""
    chan, sink = channel(), Sink()
    await commit(owner_conn, chan, 3)
    sub = await live_subscription(reader, sink, chan)
    assert sink.seqs == [1, 2, 3]
    missed = await commit(owner_conn, chan, 4)  # Redis was away: no announcements
    sub.resync()
    assert not sub.live
    await sink.wait_last(7)
    assert sub.live
    later = await commit(owner_conn, chan, 1)
    sub.on_live(announced(later[0]))

    assert sink.delivered == [*(("page", s) for s in range(1, 8)), ("live", 8)]
    assert [e.seq for e in missed] == [4, 5, 6, 7]
    await sub.stop()


async def test_resync_during_backfill_reads_again(reader: EventReader, owner_conn: OwnerConn) -> None:
    """A reconnect while a replay is already writing its last page: the running pump reads Postgres
    once more before going live, so events committed during the outage (never announced) are
    not skipped."""
    chan, sink = channel(), Sink()
    await commit(owner_conn, chan, 2)
    sub = Subscription(sink, chan, 0, reader)
    _, first = await reader.head_and_page(chan, 0)
    sink.hold_pages()
    sub.start(first, time.perf_counter())
    async with asyncio.timeout(WAIT_S):
        await sink.paused.wait()
    await commit(owner_conn, chan, 3)  # 3..5 committed while Redis was away: never announced
    sub.resync()
    sink.release()
    await sink.wait_last(5)

    assert sink.delivered == [("page", s) for s in range(1, 6)]
    assert sink.caught_up_calls == [(2, 2)]
    assert sub.live and not sub.held
    await sub.stop()


async def test_head_and_page_in_one_statement(reader: EventReader, owner_conn: OwnerConn) -> None:
    """The head and the first page after a seq, from one statement: no head yet, nothing after the
    head, a page cut at the page size, and a sinceSeq past the head (the caller refuses it)."""
    chan = channel()
    assert await reader.head_and_page(chan, 0) == (0, [])
    events = await commit(owner_conn, chan, PAGE + 2)
    head = PAGE + 2
    assert await reader.head_and_page(chan, head) == (head, [])
    assert await reader.head_and_page(chan, head + 5) == (head, [])
    got_head, page = await reader.head_and_page(chan, 0)
    assert got_head == head and [r.seq for r in page] == list(range(1, PAGE + 1))
    assert page[0].type == "test.step" and bytes(page[0].data) == b'{"i": 1}' and page[0].ts == events[0].ts
    _, tail = await reader.head_and_page(chan, PAGE)
    assert [r.seq for r in tail] == [PAGE + 1, PAGE + 2]
    assert tail == await reader.page(chan, PAGE), "the same rows as the page query"


async def test_a_run_goes_out_as_one_frame_only_right_behind_last(reader: EventReader, owner_conn: OwnerConn) -> None:
    """A live subscription right behind a run takes it as the one frame offered (``last`` moves to
    the run's end); a run that overlaps what was delivered, or one offered while catching up, goes
    event by event (the overlap skipped); a socket that cannot write now gets it event by event."""
    chan, sink = channel(), Sink()
    sub = await live_subscription(reader, sink, chan)
    events = [announced(e) for e in await commit(owner_conn, chan, 6)]
    sink.direct = True
    sub.on_live_run(events[0:2], b"frame-1-2")
    assert sink.frames == [b"frame-1-2"] and sub.last == 2 and sink.delivered == []
    sub.on_live_run(events[1:4], b"frame-2-4")  # overlaps seq 2: not right behind last
    assert sink.frames == [b"frame-1-2"] and sink.delivered == [("live", 3), ("live", 4)] and sub.last == 4
    sink.direct = False
    sub.on_live_run(events[4:6], b"frame-5-6")  # the socket is busy: one by one, in order
    assert sink.frames == [b"frame-1-2"] and sink.delivered[-2:] == [("live", 5), ("live", 6)]
    assert sub.live and sub.last == 6
    await sub.stop()


class Broken(Sink):
    """A sink whose first live delivery raises (a bug in a frame's path, not a closed socket)."""

    def __init__(self) -> None:
        super().__init__()
        self.failures = 1

    def push_event(self, event: LiveEvent) -> bool:
        if self.failures:
            self.failures -= 1
            raise RuntimeError("boom")
        return super().push_event(event)


async def test_a_dispatch_that_fails_backfills_instead_of_leaving_a_gap(reader: EventReader, migrated: str,
                                                                        owner_conn: OwnerConn) -> None:
    """An exception while dispatching a read's announcements is logged and the channel's
    subscribers backfill from Postgres: a quiet channel's last events are not lost until the next
    one, and every event's hold is released."""
    from app.config import Settings
    from app.events import ChannelOwners
    from app.realtime.gateway import Gateway

    gateway = Gateway(settings=Settings(env="test", database_url=migrated, redis_url="redis://127.0.0.1:1/0",
                                        jwt_secret="x" * 32), db=reader.db, owners=ChannelOwners())
    chan, sink = channel(), Broken()
    sub = await live_subscription(reader, sink, chan)
    gateway.index[chan] = {sub}
    stored = await commit(owner_conn, chan, 3)
    gateway.dispatch([(chan, e.announcement({}, time.time())) for e in stored])
    async with asyncio.timeout(WAIT_S):
        while sub.last < 3 or not sub.live:  # noqa: ASYNC110 - bounded by the timeout
            await asyncio.sleep(0.01)
    assert sink.delivered == [("page", 1), ("page", 2), ("page", 3)]
    await sub.stop()
