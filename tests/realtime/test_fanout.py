"""Fan-out under a server whose ``send`` is a coroutine (uvicorn): each send is run eagerly, at
once, with no task per frame, unless the socket is flow-controlled; frames keep their order per
socket either way; a batch of live events that queued up is encoded once, whatever the number of
sockets it goes to.

The wire here behaves like uvicorn's ``websockets-sansio`` ``send``: ``await writable.wait()``
(cleared while the transport's buffer is full), then a synchronous write.
"""

from __future__ import annotations

import asyncio
import json
import random

from app.realtime.outbox import LiveEvent, Outbox
from tests.realtime.test_outbox import live, merge


class CoroutineWire:
    def __init__(self) -> None:
        self.frames: list[str] = []
        self.writable = asyncio.Event()
        self.writable.set()
        self.fail = False

    async def send(self, text: str) -> None:
        await self.writable.wait()
        if self.fail:
            raise ConnectionError("peer gone")
        self.frames.append(text)

    def seqs(self) -> list[int]:
        out: list[int] = []
        for text in self.frames:
            frame = json.loads(text)
            if frame["op"] == "event":
                out.append(frame["seq"])
            elif frame["op"] == "events":
                out.extend(e["seq"] for e in frame["events"])
        return out


def box_for(wire: CoroutineWire, errors: list[bool] | None = None, **kwargs: object) -> Outbox:
    return Outbox(wire.send, on_overflow=lambda: None, on_error=lambda: (errors if errors is not None else []).append(True),
                  merge=lambda events: events[0].merged("ws", events, merge), **kwargs)  # type: ignore[arg-type]


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_a_writable_socket_is_written_at_once_without_a_task() -> None:
    wire = CoroutineWire()
    box = box_for(wire)
    tasks_before = len(asyncio.all_tasks())
    for seq in range(1, 4):
        event = live("job:a", seq)
        assert box.push(event.ws_text, event)
        assert len(asyncio.all_tasks()) == tasks_before, "a task was created for a send that did not wait"
    assert wire.seqs() == [1, 2, 3], "sends that never suspend complete before push returns"
    assert len(box) == 0


async def test_a_flow_controlled_socket_queues_in_order_and_resumes_merged() -> None:
    wire = CoroutineWire()
    box = box_for(wire)
    wire.writable.clear()
    events = [live("job:a", seq) for seq in range(1, 6)]
    for event in events:
        box.push(event.ws_text, event)
    assert wire.frames == [] and len(box) == 4, "the first send waits for the buffer, the rest queue behind it"
    wire.writable.set()
    await settle()
    assert [json.loads(f)["op"] for f in wire.frames] == ["event", "events"]
    assert wire.seqs() == [1, 2, 3, 4, 5]
    assert all(event.pending == 1 for event in events), "every queued copy was released once written"


async def test_order_per_socket_holds_with_sockets_pausing_at_random() -> None:
    """200 events to 40 sockets whose buffers fill and drain at random: every socket gets 1..200
    exactly once, in order."""
    rng = random.Random(7)
    wires = [CoroutineWire() for _ in range(40)]
    boxes = [box_for(wire, limit=10_000) for wire in wires]
    for seq in range(1, 201):
        event = live("job:a", seq)
        for wire, box in zip(wires, boxes, strict=True):
            if rng.random() < 0.1:
                wire.writable.clear()
            elif rng.random() < 0.3:
                wire.writable.set()
            box.push(event.ws_text, event)
        event.done()
        if seq % 7 == 0:
            await asyncio.sleep(0)
    for wire in wires:
        wire.writable.set()
    for _ in range(50):
        await settle()
        if all(len(box) == 0 for box in boxes) and all(len(w.seqs()) == 200 for w in wires):
            break
    for wire in wires:
        assert wire.seqs() == list(range(1, 201))


async def test_a_backlog_shared_by_many_sockets_is_encoded_once() -> None:
    """Sockets that fell behind by the same events send the very same ``events`` frame, built once."""
    builds: list[int] = []

    def counting_merge(events: list[LiveEvent]) -> str:
        builds.append(len(events))
        return merge(events)

    wires = [CoroutineWire() for _ in range(25)]
    boxes = [Outbox(w.send, on_overflow=lambda: None,
                    merge=lambda evs: evs[0].merged("ws", evs, counting_merge)) for w in wires]
    for wire in wires:
        wire.writable.clear()
    events = [live("job:a", seq) for seq in range(1, 6)]
    for event in events:
        for box in boxes:
            box.push(event.ws_text, event)
    for wire in wires:
        wire.writable.set()
    await settle()
    assert builds == [4], "one encoding of events 2..5 for all 25 sockets"
    assert len({id(w.frames[1]) for w in wires}) == 1, "every socket sent the same string object"
    assert all(w.seqs() == [1, 2, 3, 4, 5] for w in wires)


async def test_a_send_that_fails_at_once_closes_the_outbox() -> None:
    wire = CoroutineWire()
    errors: list[bool] = []
    box = box_for(wire, errors)
    wire.fail = True
    event = live("job:a", 1)
    box.push(event.ws_text, event)
    assert errors == [True] and box.closed
    assert event.pending == 1, "the failed copy was released (only the dispatcher's hold is left)"


def test_a_direct_frame_is_what_the_websockets_library_would_send() -> None:
    """The bytes written once for every socket equal the frame websockets' own server protocol
    builds for the same text (short, 16-bit and 64-bit lengths)."""
    from websockets.protocol import State
    from websockets.server import ServerProtocol

    from app.realtime.direct import text_frame

    for size in (5, 125, 126, 65_535, 65_536, 70_000):
        text = "x" * size
        protocol = ServerProtocol()
        protocol.state = State.OPEN  # the handshake is not this test's business
        protocol.send_text(text.encode())
        assert b"".join(protocol.data_to_send()) == text_frame(text.encode()), size


async def test_write_now_writes_only_what_push_would_have_written_at_once() -> None:
    """The broadcast's fast path: a framed frame goes straight out only when nothing is queued or
    in flight and the writer takes it; otherwise nothing is written and push keeps the order."""
    wire = CoroutineWire()
    written: list[bytes] = []
    accept = [True]

    def direct(frame: bytes) -> bool:
        if accept[0]:
            written.append(frame)
        return accept[0]

    box = box_for(wire, direct=direct)
    assert box.write_now(b"a") and written == [b"a"]
    accept[0] = False
    assert not box.write_now(b"b") and written == [b"a"], "a writer that cannot take it now: nothing written"
    accept[0] = True
    wire.writable.clear()
    event = live("job:a", 1)
    box.push(event.ws_text, event)  # in flight, waiting for the buffer
    assert not box.write_now(b"c"), "a send in flight: the frame must queue behind it"
    wire.writable.set()
    await settle()
    assert box.write_now(b"d") and written == [b"a", b"d"]
    await box.close()
    assert not box.write_now(b"e"), "a closed outbox writes nothing"


async def test_write_now_reports_a_failing_writer_as_not_written() -> None:
    def gone(frame: bytes) -> bool:
        raise ConnectionError("peer gone")

    box = box_for(CoroutineWire(), direct=gone)
    assert not box.write_now(b"x"), "push then meets the failure and closes the socket"


class _Transport:
    """The two transport calls the direct writer makes, recorded."""

    def __init__(self) -> None:
        self.closing = self.fails = False
        self.written: list[bytes] = []

    def write(self, frame: bytes) -> None:
        if self.fails:
            raise RuntimeError("transport closed under us")
        self.written.append(frame)

    def is_closing(self) -> bool:
        return self.closing


class _Proto:
    """The attributes of uvicorn's ``websockets-sansio`` protocol that the direct writer reads."""

    def __init__(self) -> None:
        self.transport = _Transport()
        self.writable = asyncio.Event()
        self.writable.set()
        self.disconnected = self.close_sent = False
        self.handshake_complete = True
        self.conn = None


async def test_the_fused_writer_answers_as_the_outbox_and_writer_it_folds() -> None:
    """``fused_write_now`` is ``Outbox.write_now`` over ``DirectWriter.write_frame`` in one call.
    Built while the socket is idle and open, as a session builds it, it then writes exactly when
    they would, and answers the same, in every state the outbox and the socket move to, and
    again once they are idle."""
    from app.realtime.direct import DirectWriter

    socket_states = {
        "open": lambda p: None,
        "disconnected": lambda p: setattr(p, "disconnected", True),
        "closing": lambda p: setattr(p.transport, "closing", True),
        "close sent": lambda p: setattr(p, "close_sent", True),
        "handshake pending": lambda p: setattr(p, "handshake_complete", False),
        "paused": lambda p: p.writable.clear(),
        "write fails": lambda p: setattr(p.transport, "fails", True),
    }
    for outbox_state in ("idle", "queued", "in flight", "closed"):
        for name, make in socket_states.items():
            answers: list[list[bool]] = []
            writes: list[list[bytes]] = []
            for fused in (False, True):
                said: list[bool] = []
                proto = _Proto()
                writer = DirectWriter(proto)
                box = box_for(CoroutineWire(), direct=writer.write_frame)
                write_now = writer.fused_write_now(box) if fused else box.write_now
                assert write_now(b"idle")  # built and used while idle and open
                if outbox_state == "queued":
                    box.queue.append(("x", None))
                elif outbox_state == "in flight":
                    box.inflight = True
                elif outbox_state == "closed":
                    box.closed = True
                make(proto)
                said.append(write_now(b"frame"))
                if outbox_state in ("queued", "in flight") and name == "open":
                    box.queue.clear()
                    box.inflight = False
                    said.append(write_now(b"again"))  # idle again: written again
                answers.append(said)
                writes.append(list(proto.transport.written))
            assert answers[0] == answers[1] and writes[0] == writes[1], (outbox_state, name, answers, writes)
            assert answers[0][0] == (outbox_state == "idle" and name == "open"), (outbox_state, name)
            assert answers[0][1:] in ([], [True]), (outbox_state, name, answers)


def test_consecutive_cuts_runs_at_gaps_and_at_the_merge_limit() -> None:
    from app.realtime.gateway import consecutive
    from app.realtime.outbox import MERGE_MAX

    seqs = [1, 2, 3, 5, 4, 6, *range(7, 7 + MERGE_MAX + 1)]
    runs = consecutive([live("job:a", s) for s in seqs])
    assert [[e.seq for e in run] for run in runs] == [
        [1, 2, 3], [5], [4], list(range(6, 6 + MERGE_MAX)), [6 + MERGE_MAX, 7 + MERGE_MAX]]


def test_a_replay_page_is_the_frame_its_elements_make() -> None:
    """A page encoded in one call is byte for byte the ``events`` frame built element by element
    (the order of each element's keys included), payloads spliced in as they are."""
    import msgspec

    from app.events.reader import StoredEvent
    from app.realtime import protocol

    rows = [StoredEvent(seq, "job.progress", msgspec.Raw(b'{"n":' + str(seq).encode() + ',"s":"é\\u2028\\"<"}'.encode()),
                        "2026-12-02T00:00:00.000Z") for seq in (7, 8, 9)]
    by_element = protocol.events_frame(
        "job:a", [protocol.batch_element(r.seq, r.type, r.data, r.ts) for r in rows])
    assert protocol.batch_frame("job:a", rows) == by_element
    frame = json.loads(by_element)
    assert [e["seq"] for e in frame["events"]] == [7, 8, 9] and frame["events"][0]["data"]["s"] == 'é\u2028"<'
