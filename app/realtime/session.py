"""What a WebSocket and an SSE stream share: the principal, the subscriptions, the outbox, and
closing from outside (drain, slow consumer) by cancelling the handler's own task."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from app.auth.tokens import Principal
from app.events import StoredEvent
from app.realtime.outbox import LiveEvent, Outbox
from app.realtime.protocol import Close, control
from app.realtime.subscription import Subscription, elapsed_ms
from observability.metrics import REALTIME_CONNECTIONS_REJECTED

if TYPE_CHECKING:
    from app.realtime.gateway import Gateway


AGED_OUT = "connection age reached: reconnect and resume with sinceSeq"


class Session:
    """One open stream. Subclasses say how frames are encoded and written."""

    kind = "ws"

    def __init__(self, gateway: Gateway, principal: Principal, *,
                 direct: Callable[[bytes], bool] | None = None) -> None:
        """``direct``: a synchronous writer of framed bytes, where the transport has one (see
        :meth:`Outbox.write_now`)."""
        self.gateway = gateway
        self.principal = principal
        self.client = principal.user_id
        self.subs: dict[str, Subscription] = {}
        self.outbox = Outbox(self.write, on_overflow=self._too_slow, on_error=self._write_failed,
                             merge=self.encode_events, direct=direct)
        self.write_now: Callable[[bytes], bool] = self.outbox.write_now
        """Sink.write_now: the outbox's own, bound once (it is called per socket per event)."""
        self.closing: tuple[int, str] | None = None
        self._task = asyncio.current_task()
        self._expiry: asyncio.TimerHandle | None = None

    # --- encoding and writing (per transport) ----------------------------------------------------
    def write(self, text: str) -> Awaitable[None] | None:
        """Start sending one frame; the returned awaitable completes when it is written (None:
        written already)."""
        raise NotImplementedError

    def encode_event(self, event: LiveEvent) -> str:
        raise NotImplementedError

    def encode_events(self, events: list[LiveEvent]) -> str:
        """Several live events of one channel, in order, as one write."""
        raise NotImplementedError

    def encode_page(self, channel: str, rows: list[StoredEvent]) -> str:
        raise NotImplementedError

    def encode_control(self, op: str, frame: str) -> str:
        return frame

    # --- Sink ------------------------------------------------------------------------------------
    def push_event(self, event: LiveEvent) -> bool:
        return self.outbox.push(self.encode_event(event), event)

    async def put_page(self, channel: str, rows: list[StoredEvent]) -> bool:
        return await self.outbox.put(self.encode_page(channel, rows))

    def caught_up(self, sub: Subscription, replayed: int, started: float) -> None:
        duration_ms = elapsed_ms(started)
        self.send("caught_up", control("caught_up", channel=sub.channel, seq=sub.last, replayed=replayed,
                                       durationMs=duration_ms))
        self.gateway.record_catchup(sub.channel, replayed, time.perf_counter() - started)

    def send(self, op: str, frame: str) -> bool:
        return self.outbox.push(self.encode_control(op, frame))

    # --- closing ---------------------------------------------------------------------------------
    def close(self, code: int, reason: str, metric_reason: str | None = None) -> None:
        """Ask the handler to close the stream (from any task); the first reason wins."""
        if self.closing is not None:
            return
        self.closing = (code, reason)
        if metric_reason:
            REALTIME_CONNECTIONS_REJECTED.labels(metric_reason).inc()
        self.outbox.closed = True
        if self._task is not None and self._task is not asyncio.current_task():
            self._task.cancel()

    def expire_after(self, seconds: float) -> None:
        """Close the stream with 1001 after ``seconds`` (``REALTIME_MAX_CONNECTION_AGE``): its client
        reconnects, resuming by seq, wherever the load balancer now sends it."""
        self._expiry = asyncio.get_running_loop().call_later(
            seconds, self.close, Close.GOING_AWAY, AGED_OUT, "max_age")

    def forget_expiry(self) -> None:
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None

    def _write_failed(self) -> None:
        # The peer is gone (or a frame could not be built): end the stream; a client that is
        # still there reconnects and resumes with sinceSeq.
        self.close(Close.TRY_LATER, "stream interrupted: resume with sinceSeq")

    def _too_slow(self) -> None:
        self.close(Close.TRY_LATER, "too slow: resume with sinceSeq", "slow_consumer")
