"""Each socket's outbound frames: a bounded FIFO with exactly one send in flight.

One send in flight per socket is what keeps frame order: frames leave in the order they were
queued, whatever Granian's runtime mode, because the next send is issued only when the previous
one has completed.
The bound is what keeps memory flat: a consumer that cannot keep up overflows the queue and is
closed (it resumes with ``sinceSeq``) instead of being buffered without limit.
Live events that queued up behind a send in flight leave together, as one ``events`` frame
(one SSE write), when they are next in line: a socket write costs the same for one event as for
fifty, so a socket that falls behind catches up instead of falling further behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from opentelemetry import trace

from app.realtime import protocol
from observability import tracing
from observability.metrics import REALTIME_BROADCAST_LATENCY

OUTBOX_LIMIT = 1024
"""Frames queued per socket before it counts as too slow (a replay page is one frame)."""
OUTBOX_BYTES = 4 * 1024 * 1024
"""Characters queued per socket before it counts as too slow, whatever the frame count."""
MERGE_MAX = 64
"""Most queued live events sent together as one frame."""
PUT_TIMEOUT_S = 10.0
"""How long a replay waits for room in a full queue before the consumer counts as too slow."""

_tracer = tracing.tracer("draftwire.realtime")


def start_send(sent: Any) -> Any:
    """Start a send; None when it completed at once, else a future-like to wait on.

    Granian's ``send`` returns a future (the write has started). uvicorn's is a coroutine that
    writes to the transport and, unless the socket is flow-controlled, finishes without ever
    suspending: it is run here eagerly, at once, instead of costing a task (and a loop
    iteration) per frame per socket. Only a send that does suspend becomes a task, resumed once
    the future it waits on is done. Raises what the send raised. ``sent`` None: written already."""
    if sent is None:
        return None
    if hasattr(sent, "add_done_callback"):
        return sent
    try:
        waiting = sent.send(None)
    except StopIteration:
        return None
    if waiting is None or not hasattr(waiting, "add_done_callback"):  # a bare yield (sleep(0))
        return asyncio.ensure_future(_rest(sent))
    waiting._asyncio_future_blocking = False
    task: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def resume(_: Any) -> None:
        rest = asyncio.ensure_future(_rest(sent))
        rest.add_done_callback(lambda done: _copy_outcome(done, task))

    waiting.add_done_callback(resume)
    return task


async def _rest(coroutine: Any) -> None:
    """The remainder of a coroutine that suspended: awaited through, so it resumes where it was."""
    await _Resume(coroutine)


class _Resume:
    """Awaiting this continues an already started coroutine (``yield from`` its ``send``)."""

    __slots__ = ("coroutine",)

    def __init__(self, coroutine: Any) -> None:
        self.coroutine = coroutine

    def __await__(self) -> Any:
        resume: Any = self.coroutine.send
        value: Any = None
        while True:
            try:
                waiting = resume(value)
            except StopIteration as stop:
                return stop.value
            try:
                value, resume = (yield waiting), self.coroutine.send
            except BaseException as exc:  # cancelled while waiting: the send sees it too
                value, resume = exc, self.coroutine.throw


def _copy_outcome(done: asyncio.Future[None], into: asyncio.Future[None]) -> None:
    if into.done():
        return
    if done.cancelled():
        into.cancel()
    elif (exc := done.exception()) is not None:
        into.set_exception(exc)
    else:
        into.set_result(None)


class LiveEvent:
    """One announcement, decoded once per process and shared by every socket it goes to.

    ``pending`` counts queued copies not yet written; when the last is written the event's
    publish-to-write latency is observed once (not once per socket) and its delivery span ends.
    """

    __slots__ = ("_element", "_merged", "_sse", "channel", "data", "pending", "pt", "seq", "span", "ts", "type",
                 "ws_text")

    def __init__(self, channel: str, seq: int, type_: str, data: Any, ts: str, pt: float,
                 carrier: dict[str, str], ws_text: str) -> None:
        self.channel = channel
        self.seq = seq
        self.type = type_
        self.data = data
        self.ts = ts
        self.pt = pt
        self.ws_text = ws_text
        self._sse: str | None = None
        self._element: str | None = None
        self._merged: dict[tuple[str, int, int], str] | None = None
        self.pending = 1  # held by the dispatcher until every subscriber has had it
        self.span: trace.Span | None = None
        if carrier:
            self.span = _tracer.start_span(
                "realtime deliver",
                context=tracing.extract(carrier),
                kind=trace.SpanKind.CONSUMER,
                attributes={"draftwire.channel.kind": channel.split(":", 1)[0], "draftwire.event.seq": seq},
            )

    @property
    def sse_text(self) -> str:
        if self._sse is None:
            self._sse = f"id: {self.seq}\nevent: {self.type}\ndata: {self.ws_text}\n\n"
        return self._sse

    @property
    def element(self) -> str:
        """This event as one element of an ``events`` frame (encoded once, shared by every socket)."""
        if self._element is None:
            self._element = protocol.batch_element(self.seq, self.type, self.data, self.ts)
        return self._element

    def merged(self, kind: str, events: list[LiveEvent], build: Callable[[list[LiveEvent]], str]) -> str:
        """``events`` (this one first) as one frame of transport ``kind``, built once per process:
        sockets that fell behind by the same events share the frame. Live events queued on a
        socket are consecutive seqs of one channel, so first event, count and last seq name the
        batch."""
        key = (kind, len(events), events[-1].seq)
        if self._merged is None:
            self._merged = {}
        text = self._merged.get(key)
        if text is None:
            text = self._merged[key] = build(events)
        return text

    def done(self, written: bool = True) -> None:
        """One copy written (or discarded); the last one observes latency and ends the span."""
        self.pending -= 1
        if self.pending:
            return
        if written and self.pt:
            REALTIME_BROADCAST_LATENCY.observe(max(0.0, time.time() - self.pt))
            self.pt = 0.0  # once per event: a copy held by a catching-up subscriber is counted again later
        if self.span is not None:
            self.span.end()
            self.span = None


def ws_frame_text(events: list[LiveEvent]) -> str:
    """Consecutive live events of one channel as one WebSocket frame's text: an ``event`` frame for
    one, an ``events`` frame for several, built once per process (see :meth:`LiveEvent.merged`)."""
    if len(events) == 1:
        return events[0].ws_text
    return events[0].merged("ws", events, _ws_events_frame)


def _ws_events_frame(events: list[LiveEvent]) -> str:
    return protocol.events_frame(events[0].channel, [event.element for event in events])


Item = tuple[str, LiveEvent | None]
InFlight = LiveEvent | list[LiveEvent] | bool | None
"""What the send in flight carries: one live event, several merged, a control frame (None), or
nothing (False)."""


class Outbox:
    """Bounded, ordered send queue of one socket with at most one send in flight.

    Granian's ASGI ``send`` starts the write when called and returns a future; the next frame
    is issued from that future's done-callback. So frames leave strictly in queue order (one
    in flight, whatever the runtime mode) and a broadcast costs no task wake-up per socket.
    Servers whose ``send`` returns a plain coroutine get it wrapped in a task.
    ``merge`` encodes consecutive queued live events of one channel as one frame; without it
    every event is its own send. ``direct`` writes a framed frame synchronously (False: it cannot
    now); it is what :meth:`write_now` uses.
    """

    def __init__(self, send_text: Callable[[str], Awaitable[None] | None], *, on_overflow: Callable[[], None],
                 on_error: Callable[[], None] | None = None,
                 merge: Callable[[list[LiveEvent]], str] | None = None,
                 direct: Callable[[bytes], bool] | None = None,
                 limit: int = OUTBOX_LIMIT, max_bytes: int = OUTBOX_BYTES) -> None:
        self._send_text = send_text
        self._direct = direct
        self._merge = merge
        self._on_overflow = on_overflow
        self._on_error = on_error
        self._limit = limit
        self._max_bytes = max_bytes
        self._bytes = 0
        self.queue: deque[Item] = deque()
        """Frames waiting behind the one in flight (read, never changed, by ``direct.fused_write_now``)."""
        self.inflight: InFlight = False
        self._room = asyncio.Event()
        self._room.set()
        self.closed = False

    def push(self, text: str, event: LiveEvent | None = None) -> bool:
        """Queue (or send at once) without waiting; False (and the overflow callback) when too slow."""
        if self.closed:
            return False
        if self.inflight is False and not self.queue:
            if event is not None:
                event.pending += 1
            self._issue(text, event)
            return True
        if len(self.queue) >= self._limit or self._bytes > self._max_bytes:
            self._on_overflow()
            return False
        if event is not None:
            event.pending += 1
        self.queue.append((text, event))
        self._bytes += len(text)
        if len(self.queue) >= self._limit or self._bytes > self._max_bytes:
            self._room.clear()
        return True

    def write_now(self, frame: bytes) -> bool:
        """Write an already framed live frame straight to the socket when that is exactly what
        :meth:`push` would end in: nothing queued, nothing in flight, and the writer (``direct``)
        takes it at once. False: nothing was written, use :meth:`push`. The broadcast's fast path:
        no queue entry, no completion, no per-socket hold on the event."""
        if self._direct is None or self.closed or self.inflight is not False or self.queue:
            return False
        try:
            return self._direct(frame)
        except Exception:  # the peer is gone: push meets the same failure and closes the socket
            return False

    async def put(self, text: str) -> bool:
        """Queue, waiting up to :data:`PUT_TIMEOUT_S` for room (replay pages use this)."""
        if not self._room.is_set():
            try:
                await asyncio.wait_for(self._room.wait(), PUT_TIMEOUT_S)
            except TimeoutError:
                self._on_overflow()
                return False
        return self.push(text)

    def _issue(self, text: str, event: LiveEvent | list[LiveEvent] | None) -> None:
        """Send ``text``, and then, for as long as sends complete at once, what is queued behind it
        (a loop, not recursion: a long queue must not grow the stack)."""
        step: tuple[str, LiveEvent | list[LiveEvent] | None] | None = (text, event)
        while step is not None:
            self.inflight = step[1]
            try:
                pending = start_send(self._send_text(step[0]))
            except Exception:
                step = self._completed(failed=True)
                continue
            if pending is not None:
                pending.add_done_callback(self._sent)
                return
            step = self._completed(failed=False)

    def _sent(self, future: Any) -> None:
        failed = future.cancelled() or future.exception() is not None
        step = self._completed(failed=failed)
        if step is not None:
            self._issue(*step)

    def _completed(self, *, failed: bool) -> tuple[str, LiveEvent | list[LiveEvent] | None] | None:
        """The send in flight is over: release what it carried; the next frame to send, if any."""
        carried, self.inflight = self.inflight, False
        if isinstance(carried, LiveEvent):
            carried.done(written=not failed)
        elif isinstance(carried, list):
            for event in carried:
                event.done(written=not failed)
        if self.closed:
            return None
        if failed:
            self._fail()
            return None
        if not self.queue:
            return None
        try:
            return self._next()
        except Exception:  # an event that cannot be encoded: never stall the socket silently
            self._fail()
            return None

    def _fail(self) -> None:
        self.closed = True
        if self._on_error is not None:
            self._on_error()

    def _next(self) -> tuple[str, LiveEvent | list[LiveEvent] | None]:
        """The next frame to send: the head of the queue, merged with the live events of the same
        channel right behind it when there are any."""
        queue = self.queue
        text, event = queue.popleft()
        self._bytes -= len(text)
        carried: LiveEvent | list[LiveEvent] | None = event
        if event is not None and self._merge is not None and queue:
            batch = [event]
            while queue and len(batch) < MERGE_MAX:
                follower = queue[0][1]
                if follower is None or follower.channel != event.channel:
                    break
                self._bytes -= len(queue.popleft()[0])
                batch.append(follower)
            if len(batch) > 1:
                try:
                    text, carried = self._merge(batch), batch
                except Exception:
                    for merged in batch:
                        merged.done(written=False)
                    raise
        if len(queue) < self._limit // 2 and self._bytes < self._max_bytes // 2:
            self._room.set()
        return text, carried

    async def flush(self, timeout: float) -> None:  # noqa: ASYNC109 - a bounded wait is the point
        """Wait (bounded) until everything queued has been written."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                while self.queue or self.inflight is not False:  # noqa: ASYNC110 - bounded drain poll
                    await asyncio.sleep(0.005)

    async def close(self) -> None:
        """Stop sending and release every queued event (their copies will never be written)."""
        self.closed = True
        self._bytes = 0
        while self.queue:
            _, event = self.queue.popleft()
            if event is not None:
                event.done(written=False)
        # What is in flight is released by its own completion (_sent), written or not.

    def __len__(self) -> int:
        return len(self.queue)
