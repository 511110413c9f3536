"""What a part's raw ASGI fast path needs (decision 0005): read a bounded body, answer JSON, and
turn failures into the same answers Litestar's exception handlers give.

A fast path is served in front of Litestar's router, inside the edge layer (span, metrics,
timeout, access log, ``ApiError`` rendered as the contract's JSON error body) and the security
headers. Its handler raises :class:`ApiError` for 4xx; :func:`raw_route` maps a dependency that
is down to a logged 503 and anything else to a logged 500, as ``app.errors`` does for Litestar's
routes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from litestar.types import Receive, Scope, Send

from app.errors import DEPENDENCY_DOWN, INTERNAL_ERROR_DETAIL, ApiError, dependency_down, error_body
from observability.logging import get_logger

log = get_logger("app.http")

_encode = msgspec.json.Encoder().encode
_JSON = (b"content-type", b"application/json")
_INTERNAL = _encode(error_body("internal_error", INTERNAL_ERROR_DETAIL))

RawHandler = Callable[[Scope, Receive, Send], Awaitable[None]]
Answer = tuple[int, Any]
"""(status, JSON-encodable body) of a fast path's success."""


def raw_route(route: str, serve: Callable[[Scope, Receive], Awaitable[Answer]]) -> RawHandler:
    """The raw ASGI handler of ``route`` (a template, for the log) that answers what ``serve``
    returns, JSON-encoded; ``ApiError`` passes to the edge, a dependency down is 503."""

    async def handler(scope: Scope, receive: Receive, send: Send) -> None:
        try:
            status, body = await serve(scope, receive)
        except ApiError:
            raise
        except DEPENDENCY_DOWN as exc:
            raise dependency_down(route, exc) from None
        except Exception as exc:
            log.error("unhandled_error", route=route, error=type(exc).__name__, exc_info=exc)
            await respond(send, 500, _INTERNAL)
            return
        await respond(send, status, _encode(body))

    return handler


async def respond(send: Send, status: int, payload: bytes) -> None:
    """A complete JSON response: start and body."""
    raw_send: Any = send
    await raw_send({"type": "http.response.start", "status": status,
                    "headers": [_JSON, (b"content-length", str(len(payload)).encode())]})
    await raw_send({"type": "http.response.body", "body": payload, "more_body": False})


def header(scope: Scope, name: bytes) -> str | None:
    """The first value of header ``name`` (lowercase bytes), or None."""
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


async def read_body(scope: Scope, receive: Receive, limit: int, *, why: str = "") -> bytes:
    """The whole request body; 413 before reading when ``Content-Length`` is over ``limit``
    (``why``, e.g. the limit it derives from, is added to the detail), and as soon as a chunked
    body passes it; 400 when the client leaves first.

    With a ``Content-Length``, reading stops once that many bytes are in, without waiting for the
    ``more_body: False`` message: Granian sends every chunk with ``more_body: True`` and the end as
    one more, empty message, and each ``receive()`` there is a round trip through its Rust
    threads (``loadtests/bench_raw_body.py``; decision 0005's addendum). That end message is
    then still unread: a later ``receive()`` returns it rather than waiting for a disconnect."""
    length = header(scope, b"content-length")
    expected = int(length) if length is not None and length.isdigit() else -1
    if expected > limit:
        raise ApiError(413, "payload_too_large", f"The body is over {limit} bytes{why}.")
    if expected == 0:
        return b""
    raw_receive: Any = receive
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await raw_receive()
        if message["type"] == "http.disconnect":
            raise ApiError(400, "bad_request", "The client went away before the body arrived.")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise ApiError(413, "payload_too_large", f"The body is over {limit} bytes; refused before reading it all.")
        chunks.append(chunk)
        if size == expected or not message.get("more_body", False):
            return b"".join(chunks)
