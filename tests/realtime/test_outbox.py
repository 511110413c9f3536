"""The per-socket outbox in isolation: frame order, one send in flight, live events that queued up
leaving together as one ``events`` frame, and the bound on a consumer that cannot keep up.

The send is a function whose futures the test completes by hand: that is how Granian's ``send``
behaves (the write starts when called, its future completes later), and it lets each test hold
a send in flight exactly as long as it needs to.
"""

from __future__ import annotations

import asyncio
import json

import msgspec

from app.realtime import protocol
from app.realtime.outbox import MERGE_MAX, LiveEvent, Outbox
from observability.metrics import REALTIME_BROADCAST_LATENCY


class Wire:
    """Records every frame handed to ``send`` and keeps its future pending until released."""

    def __init__(self) -> None:
        self.frames: list[str] = []
        self.pending: list[asyncio.Future[None]] = []

    def send(self, text: str) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.frames.append(text)
        self.pending.append(future)
        return future

    async def release(self, error: Exception | None = None) -> None:
        """Complete the send in flight and let its done-callback run."""
        future = self.pending.pop(0)
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)
        await asyncio.sleep(0)  # done-callbacks run on the next loop iteration

    def seqs(self) -> list[list[int]]:
        """Per frame written: the seqs it carried ([] for a control frame)."""
        out = []
        for text in self.frames:
            frame = json.loads(text)
            if frame["op"] == "event":
                out.append([frame["seq"]])
            elif frame["op"] == "events":
                out.append([e["seq"] for e in frame["events"]])
            else:
                out.append([])
        return out


def live(channel: str, seq: int) -> LiveEvent:
    data = msgspec.Raw(b'{"n":%d}' % seq)
    ts = "2026-11-23T00:00:00.000Z"
    return LiveEvent(channel, seq, "job.progress", data, ts, 0.0, {},
                     protocol.event_frame(channel, seq, "job.progress", data, ts))


def merge(events: list[LiveEvent]) -> str:
    return protocol.events_frame(events[0].channel, [e.element for e in events])


def outbox(wire: Wire, overflowed: list[bool] | None = None, limit: int = 1024) -> Outbox:
    return Outbox(wire.send, on_overflow=lambda: (overflowed if overflowed is not None else []).append(True),
                  merge=merge, limit=limit)


async def test_an_idle_socket_sends_at_once_and_one_frame_at_a_time() -> None:
    wire = Wire()
    box = outbox(wire)
    box.push(live("job:a", 1).ws_text, live("job:a", 1))
    assert wire.seqs() == [[1]]
    box.push(protocol.PONG)
    assert len(wire.frames) == 1, "a second send was issued while the first was in flight"
    await wire.release()
    assert wire.seqs() == [[1], []]


async def test_live_events_queued_behind_a_send_leave_as_one_events_frame_in_order() -> None:
    wire = Wire()
    box = outbox(wire)
    first, *queued = [live("job:a", seq) for seq in range(1, 6)]
    box.push(first.ws_text, first)
    for event in queued:
        box.push(event.ws_text, event)
    await wire.release()
    assert wire.seqs() == [[1], [2, 3, 4, 5]]
    frame = json.loads(wire.frames[1])
    assert frame["op"] == "events" and frame["channel"] == "job:a"
    assert set(frame["events"][0]) == {"seq", "type", "data", "ts"} and frame["events"][0]["data"] == {"n": 2}
    await wire.release()
    assert len(box) == 0 and not wire.pending


async def test_control_frames_and_other_channels_are_never_merged_across() -> None:
    """Merging keeps the queue's order exactly: it stops at a control frame or another channel."""
    wire = Wire()
    box = outbox(wire)
    box.push(protocol.PONG)  # in flight
    for item in [live("job:a", 1), live("job:a", 2), None, live("job:a", 3), live("job:b", 1), live("job:a", 4)]:
        if item is None:
            box.push(protocol.control("caught_up", channel="job:b", seq=0))
        else:
            box.push(item.ws_text, item)
    for _ in range(6):
        if wire.pending:
            await wire.release()
    assert wire.seqs() == [[], [1, 2], [], [3], [1], [4]]
    assert [json.loads(f).get("channel") for f in wire.frames[1:]] == ["job:a", "job:b", "job:a", "job:b", "job:a"]


async def test_a_merged_frame_holds_at_most_merge_max_events() -> None:
    wire = Wire()
    box = outbox(wire)
    events = [live("job:a", seq) for seq in range(1, MERGE_MAX + 12)]
    for event in events:
        box.push(event.ws_text, event)
    while wire.pending:
        await wire.release()
    sizes = [len(s) for s in wire.seqs()]
    assert sizes == [1, MERGE_MAX, 10]
    assert [seq for frame in wire.seqs() for seq in frame] == list(range(1, MERGE_MAX + 12))


async def test_latency_is_observed_once_per_event_when_its_last_copy_is_written() -> None:
    """An event queued to two sockets (behind a send on one, alone on the other) is observed once,
    after both writes."""
    def count() -> float:
        return sum(bucket.get() for bucket in REALTIME_BROADCAST_LATENCY._buckets)

    before = count()
    wire_a, wire_b = Wire(), Wire()
    box_a, box_b = outbox(wire_a), outbox(wire_b)
    blocker = live("job:x", 1)
    blocker.pt = 0.0
    box_a.push(blocker.ws_text, blocker)  # box_a busy
    event = live("job:a", 7)
    event.pt = 1.0  # published at t=1 s (epoch): a huge, recognisable latency
    box_a.push(event.ws_text, event)
    box_b.push(event.ws_text, event)
    event.done()  # the dispatcher lets go
    await wire_b.release()
    assert count() == before, "observed before every copy was written"
    await wire_a.release()  # the blocker
    await wire_a.release()  # the event
    assert count() == before + 1


async def test_a_consumer_that_cannot_keep_up_overflows_and_is_reported() -> None:
    wire = Wire()
    overflowed: list[bool] = []
    box = outbox(wire, overflowed, limit=4)
    events = [live("job:a", seq) for seq in range(1, 10)]
    results = [box.push(event.ws_text, event) for event in events]
    assert results[:5] == [True] * 5  # one in flight and four queued
    assert results[5] is False and overflowed
    assert len(box) == 4


async def test_a_failed_send_closes_the_outbox_and_releases_the_rest() -> None:
    wire = Wire()
    errors: list[bool] = []
    box = Outbox(wire.send, on_overflow=lambda: None, on_error=lambda: errors.append(True), merge=merge)
    first, second = live("job:a", 1), live("job:a", 2)
    box.push(first.ws_text, first)
    box.push(second.ws_text, second)
    await wire.release(ConnectionError("peer gone"))
    assert box.closed and errors == [True]
    assert len(wire.frames) == 1, "nothing is sent after a failed write"
    assert box.push(protocol.PONG) is False
    await box.close()
    assert second.pending == 1  # only the test's own hold remains


async def test_merging_keeps_the_counts_that_bound_memory() -> None:
    """After a merge the queue's byte count, the events' pending copies and the room for replay
    pages are exactly what is still queued."""
    wire = Wire()
    box = outbox(wire, limit=4)
    events = [live("job:a", seq) for seq in range(1, 6)]
    for event in events:
        box.push(event.ws_text, event)
    assert len(box) == 4 and not box._room.is_set()  # full: a replay page would wait
    assert all(event.pending == 2 for event in events)  # the test's hold + one queued copy
    await wire.release()  # 1 written; 2-5 leave merged
    assert wire.seqs() == [[1], [2, 3, 4, 5]]
    assert len(box) == 0 and box._bytes == 0 and box._room.is_set()
    assert events[0].pending == 1 and all(event.pending == 2 for event in events[1:])  # merged frame in flight
    await wire.release()
    assert all(event.pending == 1 for event in events)


async def test_a_frame_that_cannot_be_built_closes_the_socket_instead_of_stalling_it() -> None:
    wire = Wire()
    errors: list[bool] = []

    def broken(events: list[LiveEvent]) -> str:
        raise ValueError("cannot encode")

    box = Outbox(wire.send, on_overflow=lambda: None, on_error=lambda: errors.append(True), merge=broken)
    events = [live("job:a", seq) for seq in range(1, 4)]
    for event in events:
        box.push(event.ws_text, event)
    await wire.release()
    assert errors == [True] and box.closed
    assert [event.pending for event in events] == [1, 1, 1]  # every copy released, none left in limbo


async def test_a_failed_write_is_not_observed_as_delivered() -> None:
    def count() -> float:
        return sum(bucket.get() for bucket in REALTIME_BROADCAST_LATENCY._buckets)

    wire = Wire()
    box = Outbox(wire.send, on_overflow=lambda: None, on_error=lambda: None, merge=merge)
    event = live("job:a", 1)
    event.pt = 1.0
    box.push(event.ws_text, event)
    event.done()  # the dispatcher lets go; the socket's copy is the last
    before = count()
    await wire.release(ConnectionError("peer gone"))
    assert event.pending == 0 and count() == before
