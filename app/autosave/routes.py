"""``POST /api/autosave`` (``GET`` answers 405, the runbook's probe), ``GET /api/drafts`` and
``GET /api/drafts/{draftId}``."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from litestar import Request, Response, get, post
from litestar.di import NamedDependency
from litestar.params import Parameter

from app.auth.bound import ForUser
from app.autosave.cursor import CURSOR_PATTERN
from app.autosave.service import UUID_PATTERN, AutosaveService, parse_save
from app.errors import ApiError, not_found
from app.http.openapi import documents

BODY_LIMIT_FACTOR = 2
"""A body may be this many times the payload limit (pretty-printed JSON, escapes) before it is
refused unread with 413; the exact limit applies to the payload once parsed."""


UserDrafts = ForUser[AutosaveService]
"""The caller's drafts: the service bound to the authenticated user."""

SAVE_BODY = {
    "type": "object",
    "required": ["title", "payload"],
    "properties": {
        "draftId": {"type": ["string", "null"], "pattern": UUID_PATTERN, "description": "Null or absent: a new draft."},
        "title": {"type": "string", "minLength": 1, "maxLength": 200, "pattern": r"\S",
                  "description": "Not only whitespace; at most AUTOSAVE_MAX_TITLE_CHARS (200) characters."},
        "payload": {"type": "object",
                    "description": "At most AUTOSAVE_MAX_PAYLOAD_BYTES (512,000) bytes serialized, 64 levels deep."},
        "baseVersion": {"type": ["integer", "null"], "minimum": 0, "maximum": 2**63 - 1,
                        "description": "The version this edit started from; older than the latest is 409."},
    },
}
DRAFT_ID = Parameter(description="A draft id (UUID).", schema_extra={"pattern": UUID_PATTERN})


@post("/api/autosave", status_code=202, request_max_body_size=None, opt=documents(404, 409, 422, body=SAVE_BODY))
async def autosave(request: Request[Any, Any, Any], drafts: NamedDependency[UserDrafts]) -> Response[dict[str, Any]]:
    settings = drafts.service.settings
    limit = settings.autosave_max_payload_bytes * BODY_LIMIT_FACTOR + 65_536
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > limit:
        raise ApiError(413, "payload_too_large", f"The body is over {limit} bytes; the payload limit is "
                       f"{settings.autosave_max_payload_bytes} bytes serialized.")
    body = await _read_limited(request, limit)
    save = parse_save(body, settings)
    result = await drafts.service.save(drafts.user_id, save)
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
    drafts: NamedDependency[UserDrafts],
    limit: Annotated[int, Parameter(ge=1, le=100, description="Drafts per page.")] = 20,
    cursor: Annotated[str | None, Parameter(pattern=CURSOR_PATTERN, description="nextCursor of a page.")] = None,
) -> dict[str, Any]:
    return await drafts.service.list(drafts.user_id, limit, cursor)


@get("/api/drafts/{draft_id:str}")
async def get_draft(drafts: NamedDependency[UserDrafts], draft_id: Annotated[str, DRAFT_ID]) -> dict[str, Any]:
    try:
        draft_id = str(uuid.UUID(draft_id))
    except ValueError:
        raise not_found("draft") from None
    return await drafts.service.get(drafts.user_id, draft_id)


ROUTES = [autosave, list_drafts, get_draft]
