"""``GET /ws``: the WebSocket side of the gateway, spoken in raw ASGI messages.

Raw ASGI rather than Litestar's ``WebSocket`` wrapper: each send is on the broadcast hot path
(issue 4 measured ~16 ms p95 raw against ~24 ms through ``send_text``). A refusal is an accepted
socket closed at once, because a close before accept reaches the client as HTTP 403 and the
contract promises close codes (1008, 1013, 1001).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from typing import Any, cast

from litestar.types import Receive, Scope, Send, WebSocketAcceptEvent, WebSocketSendEvent

from app.events import StoredEvent
from app.realtime import direct, protocol
from app.realtime.direct import DirectWriter
from app.realtime.flood import FrameBudget
from app.realtime.gateway import Gateway, Refusal
from app.realtime.outbox import LiveEvent, ws_frame_text
from app.realtime.protocol import Close, ErrorCode, FrameError
from app.realtime.session import Session

CLOSE_SEND_TIMEOUT_S = 1.0
"""A close frame to a client that stopped reading may never leave: how long it waits while the
client takes nothing, before the connection is reset (:func:`app.realtime.direct.abort`)."""
CLOSE_SEND_LIMIT_S = 10.0
"""How long a close frame may wait in all behind frames a slow client is still reading."""


class WsSession(Session):
    kind = "ws"

    def __init__(self, gateway: Gateway, principal: Any, send: Send) -> None:
        self._direct = DirectWriter.of(send)
        super().__init__(gateway, principal, direct=self._direct.write_frame if self._direct is not None else None)
        self._send = send
        self.disconnected = False
        if self._direct is not None:
            self.write_now = self._direct.fused_write_now(self.outbox)

    def write(self, text: str) -> Awaitable[None] | None:
        if self._direct is not None and self._direct.write(text):
            return None  # written at once, framed once for every socket (app/realtime/direct.py)
        # Only the keys the servers read (Granian reads a "bytes" key that is present as bytes).
        return self._send(cast("WebSocketSendEvent", {"type": "websocket.send", "text": text}))

    def encode_event(self, event: LiveEvent) -> str:
        return event.ws_text

    def encode_events(self, events: list[LiveEvent]) -> str:
        return ws_frame_text(events)

    def encode_page(self, channel: str, rows: list[StoredEvent]) -> str:
        return protocol.batch_frame(channel, rows)


async def serve_ws(gateway: Gateway, scope: Scope, receive: Receive, send: Send) -> None:
    message = await receive()
    if message["type"] != "websocket.connect":
        return
    verdict = gateway.admit(scope, check_origin=True)
    await send(cast("WebSocketAcceptEvent", {"type": "websocket.accept"}))
    if isinstance(verdict, Refusal):
        gateway.refused(verdict)
        await send({"type": "websocket.close", "code": verdict.code, "reason": verdict.reason})
        return
    session = WsSession(gateway, verdict, send)
    gateway.join(session)
    try:
        await _receive_loop(session, receive)
    except asyncio.CancelledError:
        if session.closing is None:
            raise  # the server cancelled us: the client is gone
        task = asyncio.current_task()
        if task is not None:
            task.uncancel()
    finally:
        await gateway.leave(session)
        if session.closing is not None and not session.disconnected:
            code, reason = session.closing
            with contextlib.suppress(Exception):  # the peer went away meanwhile: nothing to close
                await _send_close(send, code, reason)


async def _send_close(send: Send, code: int, reason: str) -> None:
    """Send the close frame. It leaves behind what is queued before it: while the client takes
    none of that for :data:`CLOSE_SEND_TIMEOUT_S`, or has not taken all of it within
    :data:`CLOSE_SEND_LIMIT_S`, reset the connection instead (a client that resumes by seq loses
    nothing). The server's ``send`` waits for room before it writes anything, so a wait cut
    short is simply made again."""
    loop = asyncio.get_running_loop()
    give_up = loop.time() + CLOSE_SEND_LIMIT_S
    while True:
        before = direct.unsent(send)
        try:
            async with asyncio.timeout(CLOSE_SEND_TIMEOUT_S):
                await send({"type": "websocket.close", "code": code, "reason": reason})
            return
        except TimeoutError:
            after = direct.unsent(send)
            if before is None or after is None or after >= before or loop.time() >= give_up:
                direct.abort(send)  # stopped reading: do not keep its socket and its buffer open
                return


async def _receive_loop(session: WsSession, receive: Receive) -> None:
    gateway = session.gateway
    idle = gateway.settings.realtime_idle_timeout or None
    budget = FrameBudget(gateway.settings.realtime_client_frames_per_second)
    while session.closing is None:
        try:
            async with asyncio.timeout(idle):
                message = await receive()
        except TimeoutError:
            session.close(Close.NORMAL, "idle timeout", "idle_timeout")
            return
        kind = message["type"]
        if kind == "websocket.disconnect":
            session.disconnected = True
            return
        if kind != "websocket.receive":
            continue
        if not budget.take():
            session.close(Close.POLICY, "too many frames", "frame_flood")
            return
        text: str | None = message.get("text")  # type: ignore[assignment]
        raw: str | bytes = text if text is not None else message.get("bytes") or b""  # type: ignore[assignment]
        if len(raw) > protocol.MAX_CLIENT_FRAME_BYTES or (
            text is not None and len(text) * 4 > protocol.MAX_CLIENT_FRAME_BYTES
            and len(text.encode()) > protocol.MAX_CLIENT_FRAME_BYTES
        ):
            session.close(Close.TOO_BIG, "frame too large", "frame_too_large")
            return
        try:
            command = protocol.parse_command(raw)
        except FrameError as exc:
            session.send("error", protocol.error(ErrorCode.BAD_REQUEST, str(exc)))
            continue
        if command.op == "ping":
            session.send("pong", protocol.PONG)
        elif command.op == "subscribe":
            await gateway.subscribe(session, command.channel, command.since_seq)
        else:
            await gateway.unsubscribe(session, command.channel)
