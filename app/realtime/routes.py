"""HTTP and WebSocket routes of the realtime gateway: ``/ws``, ``/api/events`` (SSE) and
``/api/realtime/metrics`` (:func:`stream_routes`, bound to one gateway), and the admin publish
endpoint (:data:`PUBLISH_ROUTES`: publishing belongs to the API, the gateway only delivers)."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Request, Response, get, post
from litestar.di import NamedDependency
from litestar.enums import ScopeType
from litestar.handlers import asgi
from litestar.params import Parameter
from litestar.types import Receive, Scope, Send

from app.auth import AdminUser
from app.auth.audit import admin_action
from app.auth.bound import ForAdmin
from app.auth.tokens import Principal
from app.errors import ApiError
from app.events import EVENT_TYPE_RE, EventPublisher, valid_channel
from app.http.openapi import documents
from app.realtime.gateway import Gateway
from app.realtime.schema import CHANNEL_PATTERN, PUBLISH_BODY, SSE_OPERATION
from app.realtime.sse import serve_sse
from app.realtime.ws import serve_ws

MAX_EVENT_DATA_BYTES = 64 * 1024
"""Largest admin-published event body: announcements should stay small (seed 002: < 1 KB typical)."""


def stream_routes(gateway: Gateway) -> list[Any]:
    """``/ws`` and ``/api/events`` served by ``gateway``, and its ``/api/realtime/metrics``."""

    @asgi("/ws", copy_scope=False, include_in_schema=False)
    async def websocket_endpoint(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.WEBSOCKET:
            raise ApiError(400, "bad_request", "This path speaks WebSocket only.")
        await serve_ws(gateway, scope, receive, send)

    @asgi("/api/events", copy_scope=False, include_in_schema=False, opt=documents(400, 404, 422,
                                                                                   operation=SSE_OPERATION))
    async def sse_endpoint(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            raise ApiError(400, "bad_request", "This path speaks Server-Sent Events over HTTP only.")
        await serve_sse(gateway, scope, receive, send)

    @get("/api/realtime/metrics", sync_to_thread=False)
    def realtime_metrics(admin: AdminUser) -> dict[str, Any]:
        """This process's gateway: connections, subscribers per channel, the last catch-up."""
        return gateway.snapshot()

    return [websocket_endpoint, sse_endpoint, realtime_metrics]


@post("/api/admin/channels/{channel:str}/events", status_code=201, opt=documents(422, body=PUBLISH_BODY))
async def publish_event(
    request: Request[Any, Any, Any],
    publisher: NamedDependency[ForAdmin[EventPublisher]],
    channel: Annotated[str, Parameter(description="job:<id> or draft:<id>", schema_extra={"pattern": CHANNEL_PATTERN})],
) -> Response[dict[str, Any]]:
    """Append an event to ``channel`` and announce it: ``{"type": "...", "data": {...}}``."""
    check_channel(channel)
    type_, data = parse_publish(await request.body())
    return Response(await publish(publisher.service, publisher.user, channel, type_, data), status_code=201)


def check_channel(channel: str) -> None:
    if not valid_channel(channel):
        raise ApiError(422, "invalid_request", "channel must look like job:<id> or draft:<id>.")


def parse_publish(raw: bytes) -> tuple[str, dict[str, Any]]:
    """(type, data) of a publish request's body, or the 413/422 that refuses it (the channel is
    checked first, by :func:`check_channel`)."""
    if len(raw) > MAX_EVENT_DATA_BYTES:
        raise ApiError(413, "payload_too_large", f"Event bodies are limited to {MAX_EVENT_DATA_BYTES} bytes.")
    try:
        body = msgspec.json.decode(raw)
    except msgspec.DecodeError:
        raise ApiError(422, "invalid_request", 'The body must be JSON like {"type":"...","data":{}}.') from None
    if not isinstance(body, dict):
        raise ApiError(422, "invalid_request", 'The body must be JSON like {"type":"...","data":{}}.')
    type_, data = body.get("type"), body.get("data", {})
    if not isinstance(type_, str) or not EVENT_TYPE_RE.fullmatch(type_):
        raise ApiError(422, "invalid_request", "type must be lowercase words joined by dots, e.g. job.progress.")
    if not isinstance(data, dict):
        raise ApiError(422, "invalid_request", "data must be a JSON object.")
    return type_, data


async def publish(publisher: EventPublisher, admin: Principal, channel: str, type_: str,
                  data: dict[str, Any]) -> dict[str, Any]:
    """Publish, audit, and the 201 body ``{"channel", "seq"}``."""
    event = await publisher.publish(channel, type_, data)
    admin_action(admin, "channel.publish", channel, type=type_, seq=event.seq)
    return {"channel": event.channel, "seq": event.seq}


PUBLISH_ROUTES: list[Any] = [publish_event]
PUBLISH_TEMPLATE = "/api/admin/channels/{channel}/events"
"""The publish route's template (as Litestar reports it: the metrics' ``path`` label)."""
