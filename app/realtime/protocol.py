"""The wire protocol of ``/ws`` and ``/api/events`` (contract section "Realtime"): parsing client
frames, building server frames, close codes. Pure functions, no I/O."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Any

import msgspec

from app.events import StoredEvent, valid_channel

MAX_CLIENT_FRAME_BYTES = 16 * 1024
"""Client frames are tiny JSON commands; anything larger is closed with 1009."""
MAX_SEQ = 2**63 - 1
"""``seq`` is a Postgres bigint."""

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode


class Close(IntEnum):
    """WebSocket close codes the gateway uses (RFC 6455 section 7.4.1)."""

    NORMAL = 1000
    GOING_AWAY = 1001
    """Draining for shutdown."""
    POLICY = 1008
    """Auth or origin refused, or a client over its frame budget (``too many frames``)."""
    TOO_BIG = 1009
    TRY_LATER = 1013
    """Quota full, or too slow to keep up: reconnect later and resume with ``sinceSeq``."""


class ErrorCode:
    MAX_SUBSCRIPTIONS = "max_subscriptions"
    NOT_FOUND = "not_found"
    BAD_REQUEST = "bad_request"
    FORBIDDEN = "forbidden"


class FrameError(ValueError):
    """A client frame the gateway cannot act on; ``str(exc)`` is the error frame's detail."""


@dataclass(frozen=True, slots=True)
class Command:
    op: str
    channel: str = ""
    since_seq: int = 0


def parse_since(value: Any, name: str = "sinceSeq") -> int:
    """A position to resume after: a whole number 0..2^63-1 (bools and floats refused)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise FrameError(f"{name} must be a whole number >= 0.")
    if value < 0 or value > MAX_SEQ:
        raise FrameError(f"{name} must be between 0 and {MAX_SEQ}.")
    return value


def parse_since_text(text: str, name: str) -> int:
    """``Last-Event-ID`` / ``?sinceSeq=`` from text; :class:`FrameError` when not a whole number."""
    text = text.strip()
    if not text.isascii() or not text.isdigit() or len(text) > 19:
        raise FrameError(f"{name} must be a whole number >= 0.")
    return parse_since(int(text), name)


def parse_channel(value: Any) -> str:
    if not isinstance(value, str) or not valid_channel(value):
        raise FrameError("channel must look like job:<id> or draft:<id>.")
    return value


def parse_command(text: str | bytes) -> Command:
    """One client frame -> :class:`Command`; :class:`FrameError` for anything malformed."""
    try:
        frame = _decode(text)
    except msgspec.DecodeError:
        raise FrameError("Frames are JSON objects like {\"op\":\"ping\"}.") from None
    if not isinstance(frame, dict):
        raise FrameError("Frames are JSON objects like {\"op\":\"ping\"}.")
    op = frame.get("op")
    if op == "ping":
        return Command("ping")
    if op == "subscribe":
        return Command("subscribe", parse_channel(frame.get("channel")), parse_since(frame.get("sinceSeq", 0)))
    if op == "unsubscribe":
        return Command("unsubscribe", parse_channel(frame.get("channel")))
    raise FrameError("op must be subscribe, unsubscribe or ping.")


# --- server frames ---------------------------------------------------------------------------------
def control(op: str, **fields: Any) -> str:
    return _encode({"op": op, **fields}).decode()


def error(code: str, detail: str, channel: str | None = None) -> str:
    fields: dict[str, Any] = {"code": code, "detail": detail}
    if channel is not None:
        fields["channel"] = channel
    return control("error", **fields)


PONG = control("pong")


def event_frame(channel: str, seq: int, type_: str, data: msgspec.Raw, ts: str) -> str:
    """One ``event`` frame; ``data`` is spliced in as the JSON it already is."""
    return _encode({"op": "event", "channel": channel, "seq": seq, "type": type_, "data": data, "ts": ts}).decode()


def batch_element(seq: int, type_: str, data: msgspec.Raw, ts: str) -> str:
    """One element of an ``events`` frame."""
    return _encode({"seq": seq, "type": type_, "data": data, "ts": ts}).decode()


def events_frame(channel: str, elements: list[str]) -> str:
    """One ``events`` frame from encoded elements: a replay page, or live events that queued up
    behind a write (each element counts as one ``event`` frame)."""
    return f'{{"op":"events","channel":{_encode(channel).decode()},"events":[{",".join(elements)}]}}'


def batch_frame(channel: str, rows: list[StoredEvent]) -> str:
    """One ``events`` frame for a page of replayed events (one socket write instead of many),
    encoded in one call: a StoredEvent encodes as an element, its fields in element order."""
    return _encode({"op": "events", "channel": channel, "events": rows}).decode()


def sse_event(seq: int, type_: str, frame: str) -> str:
    """One SSE message: ``id:`` = seq, ``event:`` = type, ``data:`` = the WebSocket event frame."""
    return f"id: {seq}\nevent: {type_}\ndata: {frame}\n\n"

