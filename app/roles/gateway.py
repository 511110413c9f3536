"""The ``gateway`` role: ``/ws`` and ``/api/events`` (with its own ``/healthz``, ``/readyz``,
``/metrics`` and ``/api/realtime/metrics``) in a process of its own. It only delivers: events are
published by the API (and the worker), announced on Redis, read back from Postgres.

It scales on connections where the API scales on requests, so it runs under the server that holds
a socket cheapest (``GATEWAY_SERVER``, docs/decisions/0004-gateway-server.md)."""

from __future__ import annotations

from litestar import Litestar

from app import config as config_module
from app import realtime
from app.config import Settings
from app.parts import HttpPart
from app.platform import Platform
from app.roles.http import build_app
from app.roles.services import services
from observability import tracing
from observability.logging import get_logger
from observability.metrics import REALTIME_MAX_CONNECTIONS

GATEWAY_POOL_MAX = 5
"""Postgres connections per gateway process: replay pages, backfills and owner look-ups only."""


def gateway_parts(platform: Platform) -> list[HttpPart]:
    """What the gateway serves: delivery only (the channel owners are registered so that a user's
    subscribe is checked exactly as the API checks it)."""
    services(platform)
    return [realtime.gateway_part(platform)]


def create_app(settings: Settings | None = None, *, tune_process: bool = False) -> Litestar:
    settings = settings or config_module.load()
    tracing.configure("draftwire-gateway")
    REALTIME_MAX_CONNECTIONS.set(settings.realtime_max_connections)
    platform = Platform.create(settings, pool_max=GATEWAY_POOL_MAX)
    return build_app(platform, gateway_parts(platform), tune_process=tune_process)


def serve() -> Litestar:
    """The server's factory for ``draftwire gateway``: the app, with this process tuned for serving."""
    return create_app(tune_process=True)


def run(settings: Settings) -> None:
    """Serve the gateway on ``PORT`` under ``GATEWAY_SERVER``."""
    from app.roles import servers

    target = "app.roles.gateway:serve"
    if settings.gateway_server == "granian":
        if settings.realtime_compression:
            get_logger("app.gateway").warning(
                "realtime_compression_unsupported", server="granian",
                detail="Granian has no per-message deflate; sockets run uncompressed. Use GATEWAY_SERVER=uvicorn.")
        servers.granian(target, settings)
    else:
        servers.uvicorn(target, settings, ws="wsproto" if settings.gateway_server == "uvicorn-wsproto"
                        else "websockets-sansio")
