"""``POST /api/autosave`` served as raw ASGI in front of Litestar's routing, DI and response
machinery (decision 0005): it is most of the API's traffic, and that machinery was about a
third of its CPU. Behaviour and names are the Litestar route's own (``routes.autosave`` stays
registered: it documents the route in the OpenAPI schema and serves any server that bypasses
the fast path). The edge layer (span, metrics, timeout, access log, the ApiError JSON body)
wraps this handler exactly as it wraps Litestar's routes."""

from __future__ import annotations

from typing import Any, cast

import msgspec
from litestar.connection import ASGIConnection
from litestar.types import Receive, Scope, Send

from app.auth.guards import require_user
from app.auth.tokens import Keys
from app.autosave.routes import BODY_LIMIT_FACTOR
from app.autosave.service import AutosaveService, parse_save
from app.errors import DEPENDENCY_DOWN, ApiError, database_unavailable, error_body
from observability.logging import get_logger

log = get_logger(__name__)

_encode = msgspec.json.Encoder().encode
_JSON = (b"content-type", b"application/json")
_INTERNAL = _encode(
    error_body("internal_error", "Something failed on our side; retry shortly and report it if it persists.")
)


def autosave_fast_path(service: AutosaveService, secret: Keys) -> Any:
    """The raw ASGI handler of ``POST /api/autosave`` (to be wrapped by the edge)."""
    settings = service.settings
    limit = settings.autosave_max_payload_bytes * BODY_LIMIT_FACTOR + 65_536

    async def autosave(scope: Scope, receive: Receive, send: Send) -> None:
        raw_send = cast(Any, send)
        try:
            principal = require_user(ASGIConnection(scope), secret)
            length = _header(scope, b"content-length")
            if length is not None and length.isdigit() and int(length) > limit:
                raise ApiError(413, "payload_too_large", f"The body is over {limit} bytes; the payload limit is "
                               f"{settings.autosave_max_payload_bytes} bytes serialized.")
            body = await _read_limited(cast(Any, receive), limit)
            result = await service.save(principal.user_id, parse_save(body, settings))
        except ApiError:
            raise
        except DEPENDENCY_DOWN:
            raise database_unavailable() from None  # a draft Redis forgot needs Postgres for its version
        except Exception as exc:
            log.error("unhandled_error", route="/api/autosave", error=type(exc).__name__, exc_info=exc)
            await _respond(raw_send, 500, _INTERNAL)
            return
        payload = _encode({"draftId": result.draft_id, "version": result.version, "jobId": result.job_id,
                           "status": "queued"})
        await _respond(raw_send, 202, payload)

    return autosave


async def _respond(send: Any, status: int, payload: bytes) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [_JSON, (b"content-length", str(len(payload)).encode())]})
    await send({"type": "http.response.body", "body": payload, "more_body": False})


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


async def _read_limited(receive: Any, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ApiError(400, "bad_request", "The client went away before the body arrived.")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise ApiError(413, "payload_too_large", f"The body is over {limit} bytes; refused before reading it all.")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)
