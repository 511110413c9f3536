"""``POST /api/autosave`` served as raw ASGI in front of Litestar's routing, DI and response
machinery (decision 0005): it is most of the API's traffic, and that machinery was about a
third of its CPU. Behaviour and names are the Litestar route's own (``routes.autosave`` stays
registered: it documents the route in the OpenAPI schema and serves any server that bypasses
the fast path). The edge layer (span, metrics, timeout, access log, the ApiError JSON body)
wraps this handler exactly as it wraps Litestar's routes."""

from __future__ import annotations

from litestar.connection import ASGIConnection
from litestar.types import Receive, Scope

from app.auth.guards import require_user
from app.auth.tokens import Keys
from app.autosave.routes import BODY_LIMIT_FACTOR
from app.autosave.service import AutosaveService, parse_save
from app.http.raw import Answer, RawHandler, raw_route, read_body


def autosave_fast_path(service: AutosaveService, secret: Keys) -> RawHandler:
    """The raw ASGI handler of ``POST /api/autosave`` (to be wrapped by the edge)."""
    settings = service.settings
    limit = settings.autosave_max_payload_bytes * BODY_LIMIT_FACTOR + 65_536
    why = f"; the payload limit is {settings.autosave_max_payload_bytes} bytes serialized"

    async def autosave(scope: Scope, receive: Receive) -> Answer:
        principal = require_user(ASGIConnection(scope), secret)
        body = await read_body(scope, receive, limit, why=why)
        result = await service.save(principal.user_id, parse_save(body, settings))
        return 202, {"draftId": result.draft_id, "version": result.version, "jobId": result.job_id,
                     "status": "queued"}

    return raw_route("/api/autosave", autosave)
