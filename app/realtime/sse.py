"""``GET /api/events?channel=...``: Server-Sent Events with the WebSocket's guarantees.

Resumes after ``Last-Event-ID`` (or ``?sinceSeq=``); ``id:`` = seq, ``event:`` = type, ``data:`` =
the WebSocket ``event`` frame. Control frames go as ``event: subscribed|caught_up|error``
without an id, so they never move the browser's resume position. A comment line every
:data:`HEARTBEAT_S` keeps proxies from timing the stream out.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from typing import Any
from urllib.parse import parse_qs

from litestar.types import Receive, Scope, Send

from app.errors import ApiError
from app.events import StoredEvent
from app.realtime import protocol
from app.realtime.access import may_follow
from app.realtime.gateway import Gateway, Refusal
from app.realtime.outbox import LiveEvent
from app.realtime.protocol import FrameError
from app.realtime.session import Session

HEARTBEAT_S = 15.0
_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]


class SseSession(Session):
    kind = "sse"

    def __init__(self, gateway: Gateway, principal: Any, send: Send) -> None:
        super().__init__(gateway, principal)
        self._send = send

    def write(self, text: str) -> Awaitable[None]:
        return self._send({"type": "http.response.body", "body": text.encode(), "more_body": True})

    def encode_event(self, event: LiveEvent) -> str:
        return event.sse_text

    def encode_events(self, events: list[LiveEvent]) -> str:
        return events[0].merged("sse", events, _sse_texts)

    def encode_page(self, channel: str, rows: list[StoredEvent]) -> str:
        return "".join(
            protocol.sse_event(r.seq, r.type, protocol.event_frame(channel, r.seq, r.type, r.data, r.ts)) for r in rows
        )

    def encode_control(self, op: str, frame: str) -> str:
        return f"event: {op}\ndata: {frame}\n\n"


def _sse_texts(events: list[LiveEvent]) -> str:
    return "".join(event.sse_text for event in events)


def _request(scope: Scope) -> tuple[str, int]:
    """Channel and resume position, or a 4xx :class:`ApiError`."""
    if scope.get("method", "GET") not in ("GET", "HEAD"):
        raise ApiError(405, "method_not_allowed", "This path only accepts GET.", headers={"Allow": "GET, HEAD"})
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    try:
        channel = protocol.parse_channel((query.get("channel") or [""])[0])
    except FrameError as exc:
        raise ApiError(422, "invalid_request", str(exc)) from None
    headers = dict(scope.get("headers", []))
    last_id = headers.get(b"last-event-id")
    try:
        if last_id is not None:
            since = protocol.parse_since_text(last_id.decode("latin-1"), "Last-Event-ID")
        elif query.get("sinceSeq"):
            since = protocol.parse_since_text(query["sinceSeq"][0], "sinceSeq")
        else:
            since = 0
    except FrameError as exc:
        raise ApiError(400, "bad_request", str(exc)) from None
    return channel, since


async def serve_sse(gateway: Gateway, scope: Scope, receive: Receive, send: Send) -> None:
    channel, since = _request(scope)
    verdict = gateway.admit(scope, check_origin=False)
    if isinstance(verdict, Refusal):
        gateway.refused(verdict)
        retry = {"Retry-After": "5"} if verdict.status in (429, 503) else None
        code = {401: "unauthorized", 403: "forbidden", 429: "rate_limited"}.get(verdict.status, "service_unavailable")
        raise ApiError(verdict.status, code, f"Stream refused: {verdict.reason}.", headers=retry)
    # Checked before the stream starts, so someone else's channel is a plain 404 like any other.
    if not await may_follow(gateway.owners, verdict, channel):
        raise ApiError(404, "not_found", "No channel with that id belongs to you.")
    await send({"type": "http.response.start", "status": 200, "headers": _HEADERS})
    session = SseSession(gateway, verdict, send)
    gateway.join(session)
    heartbeat = asyncio.create_task(_heartbeat(session))
    try:
        await gateway.subscribe(session, channel, since, authorized=True)
        if channel in session.subs:
            while (await receive())["type"] != "http.disconnect":
                pass
        else:
            await session.outbox.flush(2.0)  # the error frame, then end the stream
    except asyncio.CancelledError:
        if session.closing is None:
            raise
        task = asyncio.current_task()
        if task is not None:
            task.uncancel()
    finally:
        heartbeat.cancel()
        await gateway.leave(session)
        with contextlib.suppress(Exception):
            async with asyncio.timeout(1.0):
                await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _heartbeat(session: SseSession) -> None:
    while True:
        await asyncio.sleep(HEARTBEAT_S)
        session.outbox.push(": heartbeat\n\n")
