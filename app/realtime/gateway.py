"""The process's realtime gateway: admission (drain, origin, auth, quotas), the subscription index
the Redis hub dispatches into, subscribe/unsubscribe, drain on shutdown, and the metrics snapshot."""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import msgspec
from litestar.connection import ASGIConnection
from litestar.types import Scope

from app.auth.guards import token_of
from app.auth.tokens import Principal, TokenError, verify
from app.config import Settings
from app.db import Database
from app.events import ChannelOwners, EventReader, decode_announcement, utc_iso_ms
from app.realtime import protocol
from app.realtime.access import may_follow
from app.realtime.direct import framed
from app.realtime.hub import RedisHub
from app.realtime.outbox import MERGE_MAX, LiveEvent, ws_frame_text
from app.realtime.protocol import Close, ErrorCode
from app.realtime.subscription import Subscription
from observability.logging import get_logger
from observability.metrics import (
    REALTIME_ACTIVE_CONNECTIONS,
    REALTIME_CATCHUP_DURATION,
    REALTIME_CATCHUP_EVENTS,
    REALTIME_CONNECTIONS_REJECTED,
    REALTIME_SUBSCRIBERS,
)

if TYPE_CHECKING:
    from app.realtime.session import Session

log = get_logger("app.realtime")

CATCHUP_SLOW_S = 1.2
"""``catchup_slow`` above this (the alert line of the catch-up SLO)."""
DRAIN_GRACE_S = 5.0
"""How long drain waits for handlers to finish after asking every stream to close."""
AGE_JITTER = 0.2
"""Each stream's age limit is drawn from (1 - AGE_JITTER .. 1) x ``REALTIME_MAX_CONNECTION_AGE``,
so the sockets a process took in one burst do not all reconnect in the same second."""


@dataclass(frozen=True, slots=True)
class Refusal:
    code: int
    reason: str
    metric: str
    status: int
    """HTTP status for SSE, where there is no close code."""


DRAINING = Refusal(Close.GOING_AWAY, "server is restarting", "draining", 503)
BAD_ORIGIN = Refusal(Close.POLICY, "origin not allowed", "origin", 403)
UNAUTHORIZED = Refusal(Close.POLICY, "unauthorized", "unauthorized", 401)
FULL = Refusal(Close.TRY_LATER, "too many connections", "max_connections", 503)
CLIENT_FULL = Refusal(Close.TRY_LATER, "too many connections for this client", "max_per_client", 429)


def _live_event(payload: bytes) -> LiveEvent | None:
    try:
        ann = decode_announcement(payload)
    except msgspec.DecodeError:
        log.warning("realtime_bad_announcement")
        return None
    frame = protocol.event_frame(ann.channel, ann.seq, ann.type, ann.data, ann.ts)
    return LiveEvent(ann.channel, ann.seq, ann.type, ann.data, ann.ts, ann.pt, ann.trace, frame)


def consecutive(events: list[LiveEvent]) -> list[list[LiveEvent]]:
    """``events`` in arrival order, cut where the seq does not follow on by one, and every
    :data:`MERGE_MAX` events (the largest frame a backlog merges into)."""
    runs: list[list[LiveEvent]] = []
    for event in events:
        if runs and len(runs[-1]) < MERGE_MAX and runs[-1][-1].seq + 1 == event.seq:
            runs[-1].append(event)
        else:
            runs.append([event])
    return runs


class Gateway:
    def __init__(self, *, settings: Settings, db: Database, owners: ChannelOwners) -> None:
        self.settings = settings
        self.owners = owners
        self.reader = EventReader(db, page_size=settings.realtime_catchup_page)
        self.hub = RedisHub(self.settings.redis_url, on_messages=self.dispatch, on_resync=self.resync)
        self.sessions: set[Session] = set()
        self.per_client: Counter[str] = Counter()
        self.index: dict[str, set[Subscription]] = {}
        self.draining = False
        self.last_catchup: dict[str, Any] | None = None

    # --- admission ---------------------------------------------------------------------------------
    def admit(self, scope: Scope, *, check_origin: bool) -> Principal | Refusal:
        """The caller, or why the stream is refused. Cheap checks first; nothing is counted yet."""
        if self.draining:
            return DRAINING
        connection: ASGIConnection[Any, Any, Any, Any] = ASGIConnection(scope)
        if check_origin and not self.origin_allowed(connection):
            return BAD_ORIGIN
        principal = self._principal(connection)
        if principal is None:
            return UNAUTHORIZED
        if len(self.sessions) >= self.settings.realtime_max_connections:
            return FULL
        if self.per_client[principal.user_id] >= self.settings.realtime_max_per_client:
            return CLIENT_FULL
        return principal

    def _principal(self, connection: ASGIConnection[Any, Any, Any, Any]) -> Principal | None:
        # Not guards.principal_of: the HTTP edge may already have cached "no principal" for this
        # scope from headers alone, and streams also accept ?token=.
        token = token_of(connection, allow_query=True)
        if not token:
            return None
        try:
            return verify(self.settings.jwt_verify_keys, token)
        except TokenError:
            return None

    def origin_allowed(self, connection: ASGIConnection[Any, Any, Any, Any]) -> bool:
        origin = connection.headers.get("origin")
        if not origin:
            return True  # not a browser: cross-site socket hijacking needs one
        origin = origin.rstrip("/")
        allowed = self.settings.realtime_allowed_origins
        if allowed:
            return "*" in allowed or origin in allowed
        return urlsplit(origin).netloc.lower() == connection.headers.get("host", "").lower()

    def refused(self, refusal: Refusal) -> None:
        REALTIME_CONNECTIONS_REJECTED.labels(refusal.metric).inc()

    def join(self, session: Session) -> None:
        self.sessions.add(session)
        if age := self.settings.realtime_max_connection_age:
            session.expire_after(age * random.uniform(1 - AGE_JITTER, 1))
        self.per_client[session.client] += 1
        REALTIME_ACTIVE_CONNECTIONS.set(len(self.sessions))

    async def leave(self, session: Session) -> None:
        session.forget_expiry()
        for channel in list(session.subs):
            await self.unsubscribe(session, channel)
        await session.outbox.close()
        self.sessions.discard(session)
        self.per_client[session.client] -= 1
        if self.per_client[session.client] <= 0:
            del self.per_client[session.client]
        REALTIME_ACTIVE_CONNECTIONS.set(len(self.sessions))

    # --- subscriptions -----------------------------------------------------------------------------
    async def subscribe(self, session: Session, channel: str, since: int, *, authorized: bool = False) -> None:
        """Authorize, register for live first, then read the head and start the replay.
        Problems become one error frame; the stream stays open."""
        started = time.perf_counter()
        if channel in session.subs:
            session.send("error", protocol.error(ErrorCode.BAD_REQUEST, "Already subscribed to this channel.",
                                                 channel))
            return
        if len(session.subs) >= self.settings.realtime_max_subscriptions:
            session.send("error", protocol.error(
                ErrorCode.MAX_SUBSCRIPTIONS,
                f"At most {self.settings.realtime_max_subscriptions} subscriptions per connection.", channel))
            return
        try:
            allowed = authorized or await may_follow(self.owners, session.principal, channel)
        except Exception as exc:
            log.warning("realtime_access_check_failed", error=type(exc).__name__)
            session.send("error", protocol.error(ErrorCode.FORBIDDEN, "Access could not be checked; retry shortly.",
                                                 channel))
            return
        if not allowed:
            session.send("error", protocol.error(ErrorCode.NOT_FOUND, "No channel with that id belongs to you.",
                                                 channel))
            return
        if session.closing or channel in session.subs:
            return
        sub = Subscription(session, channel, since, self.reader)
        session.subs[channel] = sub
        self.index.setdefault(channel, set()).add(sub)
        REALTIME_SUBSCRIBERS.inc()
        await self.hub.acquire(channel)  # announcements are held from here on
        try:
            head, first_page = await self.reader.head_and_page(channel, since)
        except Exception as exc:
            log.warning("realtime_replay_failed", error=type(exc).__name__)
            await self.unsubscribe(session, channel)
            session.send("error", protocol.error(ErrorCode.FORBIDDEN, "Events could not be read; retry shortly.",
                                                 channel))
            return
        if session.subs.get(channel) is not sub:
            return  # unsubscribed meanwhile
        if since > head:
            await self.unsubscribe(session, channel)
            past_head = f"sinceSeq is past the channel's head ({head})."
            session.send("error", protocol.error(ErrorCode.BAD_REQUEST, past_head,
                                                 channel))
            return
        session.send("subscribed", protocol.control("subscribed", channel=channel, headSeq=head))
        sub.start(first_page, started)

    async def unsubscribe(self, session: Session, channel: str) -> None:
        sub = session.subs.pop(channel, None)
        if sub is None:
            return
        subs = self.index.get(channel)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self.index[channel]
        REALTIME_SUBSCRIBERS.dec()
        self.hub.release(channel)
        await sub.stop()

    def record_catchup(self, channel: str, events: int, seconds: float) -> None:
        REALTIME_CATCHUP_DURATION.observe(seconds)
        REALTIME_CATCHUP_EVENTS.observe(events)
        duration_ms = round(seconds * 1000, 2)
        self.last_catchup = {"jobId": channel, "eventCount": events, "durationMs": duration_ms,
                             "completedAt": utc_iso_ms(datetime.now(UTC))}
        kind = channel.split(":", 1)[0]
        if seconds > CATCHUP_SLOW_S:
            log.warning("catchup_slow", channel_kind=kind, events=events, latency_ms=duration_ms)
        else:
            log.info("catchup_completed", channel_kind=kind, events=events, latency_ms=duration_ms)

    # --- from the hub ------------------------------------------------------------------------------
    def dispatch(self, messages: list[tuple[str, bytes]]) -> None:
        """Announcements that arrived in one read, in order. Each channel's consecutive events are
        framed once, as one frame, for all of its sockets: an event that came in while the process
        was still sending the previous one costs no extra socket write (nothing waits for it:
        without a backlog every event is its own frame)."""
        arrived: dict[str, list[LiveEvent]] = {}
        for channel, payload in messages:
            if channel in self.index and (event := _live_event(payload)) is not None:
                arrived.setdefault(channel, []).append(event)
        for channel, events in arrived.items():
            try:
                subs = list(self.index.get(channel, ()))
                for run in consecutive(events):
                    frame = framed(ws_frame_text(run))
                    for sub in subs:
                        sub.on_live_run(run, frame)
            except Exception as exc:  # a bug, not a state: never leave a subscriber silently behind
                log.warning("realtime_dispatch_failed", error=type(exc).__name__, channel_kind=channel.split(":", 1)[0])
                self.resync(channel)
            finally:
                for event in events:
                    event.done()  # the dispatcher's own hold

    def resync(self, channel: str) -> None:
        for sub in list(self.index.get(channel, ())):
            sub.resync()

    # --- lifecycle -----------------------------------------------------------------------------------
    def start(self) -> None:
        self.hub.start()

    async def drain(self) -> None:
        """Refuse new streams, close open ones with 1001, wait briefly for their handlers."""
        self.draining = True
        for session in list(self.sessions):
            session.close(Close.GOING_AWAY, "server is restarting")
        deadline = time.monotonic() + DRAIN_GRACE_S
        while self.sessions and time.monotonic() < deadline:  # noqa: ASYNC110 - bounded drain poll
            await asyncio.sleep(0.05)

    async def stop(self) -> None:
        await self.drain()
        await self.hub.stop()

    def snapshot(self) -> dict[str, Any]:
        return {
            "activeConnections": len(self.sessions),
            "totalSubscribers": sum(len(s) for s in self.index.values()),
            "subscriptionsByJob": {channel: len(subs) for channel, subs in self.index.items()},
            "lastCatchUp": self.last_catchup,
        }
