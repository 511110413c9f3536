"""Writing a frame once for every socket: server-to-client WebSocket frames are not masked, so
an event's frame is the same bytes on every socket. Under uvicorn's ``websockets-sansio``
protocol they are framed once per event and handed to each socket's transport directly, instead
of each socket's ``send`` framing the same text again (the Python framing was most of the
gateway's CPU per delivered frame).

Only where it is exactly what ``send`` would do: a text frame, no extension negotiated (no
per-message deflate), the handshake done, no close sent, the transport writable. Otherwise the
socket uses the ASGI ``send`` as before, so order and flow control are unchanged (the outbox
still has one write in flight per socket; a direct write completes at once). Granian's ``send``
is not a uvicorn protocol method, so under Granian nothing here applies.
"""

from __future__ import annotations

import contextlib
import socket
import struct
from collections.abc import Callable
from typing import Any

_UVICORN_SANSIO = "uvicorn.protocols.websockets.websockets_sansio_impl"


def text_frame(payload: bytes) -> bytes:
    """One unfragmented, unmasked text frame (RFC 6455 section 5.2)."""
    n = len(payload)
    if n < 126:
        return bytes((0x81, n)) + payload
    if n < 1 << 16:
        return bytes((0x81, 126)) + n.to_bytes(2, "big") + payload
    return bytes((0x81, 127)) + n.to_bytes(8, "big") + payload


class _Memo:
    """The last text framed: a broadcast hands the same string to every socket in turn."""

    __slots__ = ("frame", "text")

    def __init__(self) -> None:
        self.text: str | None = None
        self.frame = b""

    def framed(self, text: str) -> bytes:
        if text is not self.text:
            self.frame = text_frame(text.encode())
            self.text = text
        return self.frame


_memo = _Memo()
framed = _memo.framed
"""``text`` as one frame's bytes, framed once however many sockets (or the dispatcher) ask."""


def abort(send: Any) -> None:
    """Reset the connection behind ``send`` now, without a close handshake; nothing where the
    server gives no handle on it (Granian, whose close waits on the peer without a bound).

    For a peer that stopped reading, so that its close frame cannot leave: under uvicorn, closing
    a transport that still holds unsent bytes waits for the peer to read them, and a peer that
    keeps its TCP connection alive without reading keeps the socket and its write buffer (up to
    about 125 KiB) open for good, and holds a SIGTERMed uvicorn in its 30 s graceful wait."""
    proto = _uvicorn_proto(send)
    if proto is not None:
        reset(proto.transport)


def unsent(send: Any) -> int | None:
    """Bytes written to the connection behind ``send`` that the peer has not taken yet (in the
    transport, above the kernel's buffers); None where the server gives no handle on it."""
    proto = _uvicorn_proto(send)
    return None if proto is None else int(proto.transport.get_write_buffer_size())


def _uvicorn_proto(send: Any) -> Any:
    """The uvicorn protocol (any of its WebSocket implementations) whose ``send`` this is, or None."""
    proto = getattr(send, "__self__", None)
    if proto is None or type(proto).__module__.split(".")[0] != "uvicorn" or not hasattr(proto, "transport"):
        return None
    return proto


def reset(transport: Any) -> None:
    """Close ``transport`` with a TCP reset: the unsent bytes in it and in the kernel are dropped
    at once. A plain abort closes the descriptor, but the kernel still holds what the peer has
    not taken (in FIN-WAIT-1, for as long as the peer keeps acknowledging zero-window probes)."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


class DirectWriter:
    """Direct writes to one uvicorn ``websockets-sansio`` connection."""

    __slots__ = ("_proto",)

    def __init__(self, proto: Any) -> None:
        self._proto = proto

    @classmethod
    def of(cls, send: Any) -> DirectWriter | None:
        """A writer for the connection behind ``send``, or None where direct writes do not apply."""
        proto = getattr(send, "__self__", None)
        if proto is None or type(proto).__module__ != _UVICORN_SANSIO:
            return None
        conn = getattr(proto, "conn", None)
        if conn is None or getattr(conn, "extensions", None) or not hasattr(proto, "writable"):
            return None  # an extension (per-message deflate) changes the bytes: use send
        return cls(proto)

    def write(self, text: str) -> bool:
        """Write ``text`` as one frame now; False when the ASGI ``send`` must do it (flow control,
        closing). Raises ConnectionError when the peer is gone."""
        return self.write_frame(_memo.framed(text))

    def write_frame(self, frame: bytes) -> bool:
        """Write a frame built by :func:`text_frame` now; as :meth:`write`."""
        proto = self._proto
        if proto.disconnected or proto.transport.is_closing():
            raise ConnectionError("peer gone")
        if proto.close_sent or not proto.handshake_complete or not proto.writable.is_set():
            return False
        proto.transport.write(frame)
        return True

    def fused_write_now(self, outbox: Any) -> Callable[[bytes], bool]:
        """``outbox.write_now`` with this writer's :meth:`write_frame` folded in: the same checks in
        the same order and the same answers, in one Python call instead of two, on the locals of a
        closure instead of attribute chains. It is called for every socket and every event of a
        broadcast, and the merge took 7 % off the gateway's CPU there (decision 0003). ``outbox``
        is an :class:`app.realtime.outbox.Outbox` built with :meth:`write_frame` as its ``direct``."""
        proto = self._proto
        transport = proto.transport
        write, is_closing, writable = transport.write, transport.is_closing, proto.writable

        def write_now(frame: bytes) -> bool:
            if outbox.closed or outbox.inflight is not False or outbox.queue:
                return False
            if (proto.disconnected or is_closing() or proto.close_sent or not proto.handshake_complete
                    or not writable.is_set()):
                return False  # gone (push meets it and closes the socket), or flow control: push
            try:
                write(frame)
            except Exception:  # the peer is gone: push meets the same failure and closes the socket
                return False
            return True

        return write_now
