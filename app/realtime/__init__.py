"""Realtime delivery (seed 002): WebSocket ``/ws`` and SSE ``/api/events`` with catch-up
replay from Postgres and live events announced on Redis, gap-free per subscription.

:func:`gateway_part` is delivery (the gateway role, or an API that serves sockets itself);
:func:`publish_part` the admin publish endpoint (the API: the gateway only delivers)."""

from __future__ import annotations

from app.auth.bound import for_admin
from app.parts import HttpPart
from app.platform import Platform
from app.realtime.fastpublish import publish_fast_path
from app.realtime.gateway import Gateway
from app.realtime.lifecycle import lifespan, socket_fast_path
from app.realtime.routes import PUBLISH_ROUTES, PUBLISH_TEMPLATE, stream_routes


def gateway_part(platform: Platform) -> HttpPart:
    gateway = Gateway(settings=platform.settings, db=platform.db, owners=platform.owners)
    return HttpPart(
        routes=stream_routes(gateway),
        lifespans=[lifespan(gateway)],
        on_app=[socket_fast_path(gateway)],
    )


def publish_part(platform: Platform) -> HttpPart:
    return HttpPart(
        routes=list(PUBLISH_ROUTES),
        dependencies={"publisher": for_admin(platform.events)},
        fast_paths={("POST", PUBLISH_TEMPLATE): publish_fast_path(platform.events, platform.settings.jwt_verify_keys)},
    )


__all__ = ("Gateway", "gateway_part", "publish_part")
