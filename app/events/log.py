"""The write path of realtime: append an event with the next seq of its channel, then announce it.

Postgres is the source of truth (``publish_event`` allocates gap-free seqs under a row lock);
Redis only announces, so a lost announcement costs latency, never an event: subscribers
notice the jump in seq and backfill from Postgres.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import msgspec
from redis.asyncio import Redis

from app.db import Conn, Database
from app.redisconn import Pipelined
from observability import tracing
from observability.logging import get_logger

log = get_logger(__name__)

_encode = msgspec.json.Encoder().encode
ANNOUNCE_PREFIX = "dw:events:"
CHANNEL_RE = re.compile(r"^(job|draft):[A-Za-z0-9_.:@-]{1,200}$")
EVENT_TYPE_RE = re.compile(r"^[a-z][a-z0-9_.-]{0,63}$")


def valid_channel(channel: str) -> bool:
    return bool(CHANNEL_RE.fullmatch(channel))  # fullmatch: '$' alone lets a trailing newline in


@dataclass(frozen=True, slots=True)
class Event:
    channel: str
    seq: int
    type: str
    data: dict[str, Any]
    ts: str
    """Publish time, ISO-8601 UTC with ms."""

    def announcement(self, carrier: dict[str, str], published_at: float) -> bytes:
        return _encode(
            {
                "channel": self.channel,
                "seq": self.seq,
                "type": self.type,
                "data": self.data,
                "ts": self.ts,
                "pt": published_at,
                "trace": carrier,
            }
        )


class Announcement(msgspec.Struct, frozen=True):
    """What :meth:`EventPublisher.announce` puts on Redis (``data`` kept as raw JSON)."""

    channel: str
    seq: int
    type: str
    data: msgspec.Raw
    ts: str
    pt: float = 0.0
    trace: dict[str, str] = {}


decode_announcement = msgspec.json.Decoder(Announcement).decode


class EventPublisher:
    """Append events to ``channel_events`` and announce them on Redis."""

    def __init__(self, db: Database, redis: Redis, pipelined: Pipelined) -> None:
        self.db = db
        self.redis = redis
        self._pipelined = pipelined
        """Where a single announcement goes (the admin publish route makes one each)."""

    async def append(self, conn: Conn, channel: str, type_: str, data: dict[str, Any]) -> Event:
        """Insert inside the caller's transaction; call :meth:`announce` after it commits."""
        cur = await conn.execute(
            "SELECT seq, created_at FROM publish_event(%s, %s, %s::jsonb)",
            (channel, type_, _encode(data).decode()),
        )
        row = await cur.fetchone()
        assert row is not None
        return Event(channel, int(row["seq"]), type_, data, utc_iso_ms(row["created_at"]))

    async def publish(self, channel: str, type_: str, data: dict[str, Any]) -> Event:
        """Append (``publish_event`` is one statement, so its own transaction), then announce."""
        with tracing.tracer("draftwire.events").start_as_current_span(
            "event publish", attributes={"draftwire.channel.kind": channel.split(":", 1)[0]}
        ):
            async with self.db.autocommit("events.publish") as conn:
                event = await self.append(conn, channel, type_, data)
            await self.announce([event])
        return event

    @staticmethod
    def announcements(events: list[Event], carriers: list[dict[str, str]] | None = None) -> list[tuple[str, bytes]]:
        """(Redis channel, message) per event, for a caller that publishes them in its own pipeline."""
        now = time.time()
        default = tracing.inject()
        return [
            (ANNOUNCE_PREFIX + event.channel, event.announcement(carriers[i] if carriers else default, now))
            for i, event in enumerate(events)
        ]

    async def announce(self, events: list[Event], carriers: list[dict[str, str]] | None = None) -> None:
        """Tell every API process; failures are logged, never raised (Postgres already has it)."""
        if not events:
            return
        try:
            messages = self.announcements(events, carriers)
            if len(messages) == 1:
                await self._pipelined.call("PUBLISH", *messages[0])
                return
            async with self.redis.pipeline(transaction=False) as pipe:
                for channel, message in messages:
                    pipe.publish(channel, message)
                await pipe.execute()
        except Exception as exc:
            log.warning("event_announce_failed", error=type(exc).__name__, count=len(events))


def utc_iso_ms(ts: datetime) -> str:
    """``2026-11-23T01:02:03.456Z`` for an aware datetime."""
    utc = ts.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"
