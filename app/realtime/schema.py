"""How the realtime HTTP endpoints appear in the OpenAPI document: ``GET /api/events`` (an ASGI
handler, so described here by hand) and the admin publish body. Patterns are the ones
:mod:`app.events.log` and :mod:`app.realtime.protocol` enforce."""

from __future__ import annotations

from typing import Any

from app.events.log import CHANNEL_RE, EVENT_TYPE_RE

CHANNEL_PATTERN = CHANNEL_RE.pattern
SEQ = {"type": "integer", "minimum": 0, "maximum": 2**63 - 1}

PUBLISH_BODY: dict[str, Any] = {
    "type": "object",
    "required": ["type"],
    "properties": {
        "type": {"type": "string", "pattern": EVENT_TYPE_RE.pattern, "description": "e.g. job.progress"},
        "data": {"type": "object", "description": "At most 64 KiB of JSON, the whole body included."},
    },
}

SSE_OPERATION: dict[str, Any] = {
    "summary": "Events",
    "operationId": "ApiEventsStream",
    "description": (
        "Server-Sent Events of one channel: replay after Last-Event-ID (or sinceSeq), then live; "
        "id = seq, event = type, data = the WebSocket event frame. A user may follow the channels "
        "of their own jobs and drafts; the session may also come as ?token=."
    ),
    "parameters": [
        {"name": "channel", "in": "query", "required": True,
         "schema": {"type": "string", "pattern": CHANNEL_PATTERN}},
        {"name": "sinceSeq", "in": "query", "required": False, "schema": SEQ},
        {"name": "Last-Event-ID", "in": "header", "required": False, "schema": SEQ},
        {"name": "token", "in": "query", "required": False, "schema": {"type": "string"},
         "description": "The session token, for EventSource clients that cannot send headers."},
    ],
    "responses": {
        "200": {"description": "The event stream (never ends by itself).",
                "content": {"text/event-stream": {"schema": {"type": "string"}}}},
    },
}
