"""``POST /api/admin/channels/{channel}/events`` as a raw ASGI fast path (decision 0005): a job
or a build reporting progress publishes many small events, and Litestar's routing, DI and
response machinery cost more than the append and the announcement themselves. Behaviour is the
Litestar route's own (``routes.publish_event`` stays registered for the schema and for servers
without fast paths); both run :func:`routes.check_channel`, :func:`routes.parse_publish` and :func:`routes.publish`."""

from __future__ import annotations

from typing import Any

from litestar.connection import ASGIConnection
from litestar.types import Receive, Scope

from app.auth.guards import require_admin
from app.auth.tokens import Keys
from app.events import EventPublisher
from app.http.raw import Answer, RawHandler, raw_route, read_body
from app.realtime.routes import MAX_EVENT_DATA_BYTES, PUBLISH_TEMPLATE, check_channel, parse_publish, publish


def publish_fast_path(publisher: EventPublisher, secret: Keys) -> RawHandler:
    """The raw ASGI handler of the publish route (to be wrapped by the edge)."""

    async def serve(scope: Scope, receive: Receive) -> Answer:
        admin = require_admin(ASGIConnection(scope), secret)
        channel: Any = scope["path_params"]["channel"]
        check_channel(channel)
        raw = await read_body(scope, receive, MAX_EVENT_DATA_BYTES)
        type_, data = parse_publish(raw)
        return 201, await publish(publisher, admin, channel, type_, data)

    return raw_route(PUBLISH_TEMPLATE, serve)
