"""Wires the realtime gateway (WebSocket, SSE, admin publish, metrics) into the app."""

from __future__ import annotations

from litestar.config.app import AppConfig
from litestar.plugins import InitPlugin


class RealtimePlugin(InitPlugin):
    """Adds the realtime routes (and, later, the Redis subscriber supervisor's lifespan)."""

    def on_app_init(self, app_config: AppConfig) -> AppConfig:
        from app.realtime.routes import ROUTES

        app_config.route_handlers.extend(ROUTES)
        return app_config
