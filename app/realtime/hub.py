"""One Redis pub/sub connection per API process, its channels reference-counted, supervised.

On loss the supervisor reconnects with backoff 2, 4, 8, 16, 32 s, then every 32 s, never giving up
(``realtime_redis_reconnects_total``, log ``redis_reconnecting``). After it resubscribes, each
channel's subscribers are told to backfill from Postgres once Redis has confirmed the
SUBSCRIBE: everything committed after that moment is announced, everything before is in Postgres.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

from app.events import ANNOUNCE_PREFIX
from app.realtime.resp import PubSubConnection, Refused
from observability.logging import get_logger
from observability.metrics import REALTIME_REDIS_RECONNECTS

log = get_logger(__name__)

BACKOFF_S = (2, 4, 8, 16, 32)
"""Waits before reconnect attempts; the last repeats forever."""
PING_EVERY_S = 10.0
SILENCE_LIMIT_S = 25.0
"""No reply at all (not even to our PINGs) for this long means the connection is dead."""
CONFIRM_WAIT_S = 2.0
"""How long a new subscriber waits for Redis to confirm its channel before replaying anyway."""
LINGER_S = 5.0
"""How long a channel stays subscribed on Redis after its last subscriber here left: a client that
reconnects (a reload, a network blip, a gateway draining or ageing its sockets) resubscribes
without waiting for a SUBSCRIBE round trip; announcements meanwhile are read and dropped (no
subscriber). A channel released before Redis confirmed it lingers too, so that no UNSUBSCRIBE is
ever sent while its SUBSCRIBE is outstanding."""


def backoff(attempt: int) -> float:
    """Seconds to wait before reconnect attempt ``attempt`` (1-based)."""
    return float(BACKOFF_S[min(attempt, len(BACKOFF_S)) - 1])


class RedisHub:
    """Reference-counted channel subscriptions over one supervised pub/sub connection."""

    def __init__(
        self,
        url: str,
        *,
        on_messages: Callable[[list[tuple[str, bytes]]], None],
        on_resync: Callable[[str], None],
    ) -> None:
        self.url = url
        self._on_messages = on_messages
        self._on_resync = on_resync
        self._refs: dict[str, int] = {}
        self._confirmed: set[str] = set()
        self._resync: set[str] = set()
        self._waiters: dict[str, list[asyncio.Future[None]]] = {}
        self._lingering: dict[str, asyncio.TimerHandle] = {}
        self._conn: PubSubConnection | None = None
        self._task: asyncio.Task[None] | None = None
        self.connected = False

    # --- channel references ------------------------------------------------------------------
    async def acquire(self, channel: str) -> None:
        """Count a subscriber of ``channel``; return once Redis confirmed the SUBSCRIBE (or after
        :data:`CONFIRM_WAIT_S`, in which case the channel is backfilled when it is confirmed)."""
        self._refs[channel] = self._refs.get(channel, 0) + 1
        if (linger := self._lingering.pop(channel, None)) is not None:
            linger.cancel()  # its SUBSCRIBE was sent on this connection (a reconnect ends every linger)
        if channel in self._confirmed:
            return
        if self._refs[channel] == 1 and linger is None and self._conn is not None:
            with contextlib.suppress(ConnectionError):
                self._conn.subscribe(ANNOUNCE_PREFIX + channel)
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(channel, []).append(waiter)
        try:
            await asyncio.wait_for(asyncio.shield(waiter), CONFIRM_WAIT_S)
        except TimeoutError:
            self._resync.add(channel)
        finally:
            waiters = self._waiters.get(channel)
            if waiters and waiter in waiters:
                waiters.remove(waiter)

    def release(self, channel: str) -> None:
        count = self._refs.get(channel, 0) - 1
        if count > 0:
            self._refs[channel] = count
            return
        self._refs.pop(channel, None)
        self._resync.discard(channel)
        if (previous := self._lingering.pop(channel, None)) is not None:
            previous.cancel()
        if self._conn is not None:
            self._lingering[channel] = asyncio.get_running_loop().call_later(LINGER_S, self._unsubscribe, channel)
        else:
            self._confirmed.discard(channel)  # no connection, no subscription: the next one starts clean

    def _unsubscribe(self, channel: str) -> None:
        self._lingering.pop(channel, None)
        self._confirmed.discard(channel)
        if self._conn is not None:
            with contextlib.suppress(ConnectionError):
                self._conn.unsubscribe(ANNOUNCE_PREFIX + channel)

    @property
    def channels(self) -> int:
        return len(self._refs)

    # --- supervision -----------------------------------------------------------------------------
    def start(self) -> None:
        self._task = asyncio.create_task(self._supervise(), name="realtime-redis-hub")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._drop()

    async def _supervise(self) -> None:
        attempt = 0
        failure: dict[str, str] = {}
        while True:
            if attempt:
                delay = backoff(attempt)
                REALTIME_REDIS_RECONNECTS.inc()
                log.warning("redis_reconnecting", attempt=attempt, delay_s=delay, **failure)
                await asyncio.sleep(delay)
            try:
                conn = await PubSubConnection.open(self.url)
            except (OSError, TimeoutError, ConnectionError) as exc:
                attempt += 1
                # A refusal's message says what to fix (and holds no secret); others are just their kind.
                failure = {"error": type(exc).__name__, **({"detail": str(exc)} if isinstance(exc, Refused) else {})}
                log.debug("redis_connect_failed", error=type(exc).__name__)
                continue
            failure = {}
            reconnected = attempt > 0
            attempt = 0
            try:
                await self._serve(conn, reconnected)
            except (OSError, TimeoutError, ConnectionError) as exc:
                log.warning("redis_subscriber_lost", error=type(exc).__name__)
            finally:
                self._drop()
            attempt = 1

    def _drop(self) -> None:
        if self._conn is not None:
            self._conn.close()
        self._conn = None
        self.connected = False
        self._confirmed.clear()
        for linger in self._lingering.values():
            linger.cancel()  # a new connection subscribes only to channels with subscribers
        self._lingering.clear()

    async def _serve(self, conn: PubSubConnection, reconnected: bool) -> None:
        self._conn = conn
        self.connected = True
        channels = list(self._refs)
        if reconnected:
            # Announcements published while we were away are gone: backfill once confirmed.
            self._resync.update(channels)
        conn.subscribe(*(ANNOUNCE_PREFIX + c for c in channels))
        loop = asyncio.get_running_loop()
        heard = [loop.time()]
        pinger = asyncio.create_task(self._ping(conn, heard))
        try:
            while True:
                replies = await conn.read()
                heard[0] = loop.time()
                self._handle(replies)
        finally:
            pinger.cancel()

    async def _ping(self, conn: PubSubConnection, heard: list[float]) -> None:
        """PING every :data:`PING_EVERY_S`; abort the connection (the read then fails and the
        supervisor reconnects) once nothing at all came for :data:`SILENCE_LIMIT_S`. A watchdog
        rather than a timeout around each read: no timer per announcement."""
        loop = asyncio.get_running_loop()
        next_ping = loop.time() + PING_EVERY_S
        while True:
            await asyncio.sleep(max(0.0, min(next_ping, heard[0] + SILENCE_LIMIT_S) - loop.time()))
            now = loop.time()
            if now - heard[0] >= SILENCE_LIMIT_S:
                log.warning("redis_subscriber_silent", silent_s=round(now - heard[0], 1))
                conn.abort()
                return
            if now >= next_ping:
                next_ping = now + PING_EVERY_S
                with contextlib.suppress(ConnectionError):  # closing: the read ends by itself
                    conn.ping()

    def _handle(self, replies: list[Any]) -> None:
        """One read's replies, in order. Announcements that arrived together go to the dispatcher
        together: an event that came in while the process was busy with the previous one leaves
        with it, one socket write for both (docs/decisions/0003-realtime-delivery.md)."""
        messages: list[tuple[str, bytes]] = []
        for reply in replies:
            if not isinstance(reply, list) or len(reply) < 3:
                continue  # PONG and other keep-alive replies
            kind = reply[0]
            if kind == b"message":
                messages.append((reply[1][len(ANNOUNCE_PREFIX):].decode(), reply[2]))
            elif kind == b"subscribe":
                self._deliver(messages)  # what was announced before the confirmation goes first
                messages = []
                self._confirm(reply[1][len(ANNOUNCE_PREFIX):].decode())
        self._deliver(messages)

    def _deliver(self, messages: list[tuple[str, bytes]]) -> None:
        if not messages:
            return
        try:
            self._on_messages(messages)
        except Exception as exc:
            log.warning("realtime_dispatch_failed", error=type(exc).__name__)

    def _confirm(self, channel: str) -> None:
        if channel not in self._refs and channel not in self._lingering:
            return
        self._confirmed.add(channel)
        for waiter in self._waiters.pop(channel, []):
            if not waiter.done():
                waiter.set_result(None)
        if channel in self._resync:
            self._resync.discard(channel)
            self._on_resync(channel)
