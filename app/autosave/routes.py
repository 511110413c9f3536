"""``POST /api/autosave`` (``GET`` answers 405, the runbook's probe), ``GET /api/drafts`` and
``GET /api/drafts/{draftId}``."""

from __future__ import annotations

import uuid
from typing import Any

from litestar import Request, Response, get, post
from litestar.params import FromPath, FromQuery

from app.auth.guards import require_user
from app.autosave.service import parse_save
from app.errors import ApiError, not_found

BODY_LIMIT_FACTOR = 2
"""A body may be this many times the payload limit (pretty-printed JSON, escapes) before it is
refused unread with 413; the exact limit applies to the payload once parsed."""


@post("/api/autosave", status_code=202, request_max_body_size=None)
async def autosave(request: Request[Any, Any, Any]) -> Response[dict[str, Any]]:
    runtime = request.app.state.runtime
    settings = runtime.settings
    principal = require_user(request, settings.jwt_secret)
    limit = settings.autosave_max_payload_bytes * BODY_LIMIT_FACTOR + 65_536
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > limit:
        raise ApiError(413, "payload_too_large", f"The body is over {limit} bytes; the payload limit is "
                       f"{settings.autosave_max_payload_bytes} bytes serialized.")
    body = await _read_limited(request, limit)
    save = parse_save(body, settings)
    result = await runtime.autosave.save(principal.user_id, save)
    return Response(
        {"draftId": result.draft_id, "version": result.version, "jobId": result.job_id, "status": "queued"},
        status_code=202,
    )


async def _read_limited(request: Request[Any, Any, Any], limit: int) -> bytes:
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, "payload_too_large", f"The body is over {limit} bytes; refused before reading it all.")
        chunks.append(chunk)
    return b"".join(chunks)


@get("/api/drafts")
async def list_drafts(
    request: Request[Any, Any, Any], limit: FromQuery[int] = 20, cursor: FromQuery[str | None] = None
) -> dict[str, Any]:
    runtime = request.app.state.runtime
    principal = require_user(request, runtime.settings.jwt_secret)
    if not 1 <= limit <= 100:
        raise ApiError(400, "invalid_limit", "limit must be between 1 and 100.")
    return await runtime.autosave.list(principal.user_id, limit, cursor)  # type: ignore[no-any-return]


@get("/api/drafts/{draft_id:str}")
async def get_draft(request: Request[Any, Any, Any], draft_id: FromPath[str]) -> dict[str, Any]:
    runtime = request.app.state.runtime
    principal = require_user(request, runtime.settings.jwt_secret)
    try:
        draft_id = str(uuid.UUID(draft_id))
    except ValueError:
        raise not_found("draft") from None
    return await runtime.autosave.get(principal.user_id, draft_id)  # type: ignore[no-any-return]


ROUTES = [autosave, list_drafts, get_draft]
