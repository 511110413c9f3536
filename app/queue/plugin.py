"""Wires the queue's HTTP surface (jobs, builds, admin) into the app."""

from __future__ import annotations

from litestar.config.app import AppConfig
from litestar.plugins import InitPlugin


class QueuePlugin(InitPlugin):
    """Adds the job, build and admin queue routes."""

    def on_app_init(self, app_config: AppConfig) -> AppConfig:
        from app.queue.routes import ROUTES

        app_config.route_handlers.extend(ROUTES)
        return app_config
