"""``create_app()``: the Litestar application the API process serves under Granian."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar
from litestar.openapi import OpenAPIConfig

from app import config as config_module
from app import health
from app.autosave.routes import ROUTES as AUTOSAVE_ROUTES
from app.config import Settings
from app.edge import EdgeMiddleware
from app.errors import EXCEPTION_HANDLERS
from app.plugins import opentelemetry_plugin, prometheus_config, structlog_plugin
from app.queue.plugin import QueuePlugin
from app.realtime.plugin import RealtimePlugin
from app.runtime import Runtime
from app.web import routes_for as web_routes
from observability import tracing
from observability.metrics import REALTIME_MAX_CONNECTIONS


def create_app(settings: Settings | None = None) -> Litestar:
    settings = settings or config_module.load()
    tracing.configure("draftwire-api")
    runtime = Runtime.create(settings)
    REALTIME_MAX_CONNECTIONS.set(settings.realtime_max_connections)

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        await runtime.start()
        try:
            yield
        finally:
            await runtime.stop()

    app = Litestar(
        route_handlers=[health.healthz, health.readyz, health.health, health.metrics, *AUTOSAVE_ROUTES,
                        *web_routes(settings)],
        plugins=[structlog_plugin(settings), opentelemetry_plugin(), QueuePlugin(), RealtimePlugin()],
        middleware=[prometheus_config().middleware, EdgeMiddleware()],
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=[lifespan],
        openapi_config=OpenAPIConfig(title="Draftwire", version="0.1.0", path="/schema"),
        debug=False,
    )
    app.state.runtime = runtime
    return app
