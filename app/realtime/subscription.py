"""One socket's subscription to one channel: exactly once, in order, no gap.

``last`` is the last seq delivered. While ``live`` is false (replaying, backfilling a gap, or
resyncing after a Redis reconnect) announcements are held; the pump reads Postgres after ``last``
up to the head, then delivers the held events in seq order (skipping what it already sent) and
only then goes live. A live announcement whose seq is not ``last + 1`` stops live delivery and
starts the pump again. Everything runs on one event loop, so the switch to live cannot race
with an announcement.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Protocol

from app.events import EventReader, StoredEvent
from app.realtime.outbox import LiveEvent
from observability.logging import get_logger
from observability.metrics import REALTIME_SEQUENCE_GAPS

log = get_logger(__name__)

HELD_LIMIT = 5000
"""Announcements held per subscription while it catches up; beyond this they are dropped and
read from Postgres instead (memory stays bounded, nothing is lost)."""
REORDER_GRACE_S = 0.05
"""How long a jump in seq waits for the missing announcements before reading Postgres:
concurrent publishers commit in seq order but may announce out of order, so most jumps
close by themselves within a millisecond or two."""
RETRY_S = (0.2, 0.5, 1.0, 2.0, 5.0)
"""Waits between attempts when Postgres fails during a replay or backfill."""


class Sink(Protocol):
    """Where a subscription's frames go: a WebSocket or an SSE stream."""

    def push_event(self, event: LiveEvent) -> bool: ...
    def write_now(self, frame: bytes) -> bool:
        """Write ``frame`` (live events, framed once for every socket) at once if nothing is
        queued and the transport takes it now; False: nothing written."""
        ...
    async def put_page(self, channel: str, rows: list[StoredEvent]) -> bool: ...
    def caught_up(self, sub: Subscription, replayed: int, started: float) -> None: ...


class Subscription:
    def __init__(self, sink: Sink, channel: str, since: int, reader: EventReader) -> None:
        self.sink = sink
        self.write_now = sink.write_now
        """The sink's, bound once: it is called for every socket and every event of a broadcast."""
        self.channel = channel
        self.last = since
        self.live = False
        self.held: list[LiveEvent] = []
        self.reader = reader
        self._dirty = False
        self._started: float | None = None
        self._ready = False
        self._grace: asyncio.TimerHandle | None = None
        self._replayed = 0
        self._task: asyncio.Task[None] | None = None

    # --- called by the dispatcher, synchronously ---------------------------------------------
    def on_live(self, event: LiveEvent) -> None:
        if event.seq <= self.last:
            return  # already delivered (replay and announcement overlap, or a duplicate)
        if self.live:
            if event.seq == self.last + 1:
                self.sink.push_event(event)  # first: if it raises, a backfill still covers this seq
                self.last = event.seq
                return
            self.live = False
            self.held.append(event)
            self._grace = asyncio.get_running_loop().call_later(REORDER_GRACE_S, self._grace_over)
            return
        if len(self.held) < HELD_LIMIT:
            self.held.append(event)
        else:
            self._dirty = True  # dropped: the pump must read Postgres again before going live
        if self._grace is not None:
            self._deliver_contiguous()
        else:
            self._ensure_pump()

    def on_live_run(self, events: list[LiveEvent], frame: bytes) -> None:
        """Consecutive live events that arrived together, with their frame built once: when this
        subscription is live and right behind them and its socket is idle, they go out at once
        as that one frame (the broadcast's fast path); otherwise one by one through on_live."""
        if self.live and self.last == events[0].seq - 1 and self.write_now(frame):
            self.last = events[-1].seq
            return
        for event in events:
            self.on_live(event)

    def _deliver_contiguous(self) -> None:
        """While waiting out a reorder: deliver what became contiguous; live again once nothing is held."""
        self.held.sort(key=lambda e: e.seq)
        while self.held and self.held[0].seq <= self.last + 1:
            event = self.held.pop(0)
            if event.seq == self.last + 1:
                self.sink.push_event(event)  # first: if it raises, a backfill still covers this seq
                self.last = event.seq
        if not self.held and self._grace is not None:
            self._grace.cancel()
            self._grace = None
            self.live = True

    def _grace_over(self) -> None:
        """The missing seqs were not announced in time: a real gap, backfill from Postgres."""
        self._grace = None
        REALTIME_SEQUENCE_GAPS.inc()
        self._ensure_pump()

    def resync(self) -> None:
        """Announcements may have been lost (Redis reconnected): backfill from Postgres."""
        self._dirty = True
        self.live = False
        if self._grace is not None:
            self._grace.cancel()
            self._grace = None
        self._ensure_pump()

    # --- the pump --------------------------------------------------------------------------------
    def start(self, first_page: list[StoredEvent], started: float) -> None:
        """Begin the replay with the page already read alongside the head."""
        self._started = started
        self._ready = True
        self._task = asyncio.create_task(self._pump(first_page), name="realtime-replay")

    def _ensure_pump(self) -> None:
        if not self._ready:
            return  # not started: the first replay will deliver what is held
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._pump(None), name="realtime-backfill")

    async def _pump(self, first_page: list[StoredEvent] | None) -> None:
        failures = 0
        while True:
            try:
                await self._catch_up(first_page)
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("realtime_backfill_failed", error=type(exc).__name__, attempt=failures + 1)
                first_page = None
                await asyncio.sleep(RETRY_S[min(failures, len(RETRY_S) - 1)])
                failures += 1

    async def _catch_up(self, first_page: list[StoredEvent] | None) -> None:
        page_size = self.reader.page_size
        while True:
            self._dirty = False
            # Held events that arrived before this read started: if the read does not fill
            # the gap before one of them, nothing will (the missing seqs were deleted).
            arrived_before = {id(e) for e in self.held} if first_page is None else set()
            rows = first_page if first_page is not None else await self.reader.page(self.channel, self.last)
            first_page = None
            while True:
                rows = [r for r in rows if r.seq > self.last]
                if rows:
                    if not await self.sink.put_page(self.channel, rows):
                        return  # the socket is closing
                    self.last = rows[-1].seq
                    self._replayed += len(rows)
                if len(rows) < page_size:
                    break
                rows = await self.reader.page(self.channel, self.last)
            if self._started is not None:
                self.sink.caught_up(self, self._replayed, self._started)
                self._started = None
            if self._deliver_held(arrived_before) or self._dirty:
                continue
            self.live = True
            return

    def _deliver_held(self, arrived_before: set[int]) -> bool:
        """Deliver held events in order; True when a gap remains that Postgres must fill first."""
        held = sorted(self.held, key=lambda e: e.seq)
        self.held = []
        for i, event in enumerate(held):
            if event.seq <= self.last:
                continue
            if event.seq != self.last + 1 and id(event) not in arrived_before:
                REALTIME_SEQUENCE_GAPS.inc()
                self.held = held[i:]
                return True
            self.sink.push_event(event)  # first: if it raises, a backfill still covers this seq
            self.last = event.seq
        return False

    async def stop(self) -> None:
        if self._grace is not None:
            self._grace.cancel()
            self._grace = None
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.held = []


def elapsed_ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)
