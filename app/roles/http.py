"""Building a Litestar app from parts: the shared shape of the HTTP roles (api, gateway)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from litestar import Litestar
from litestar.openapi import OpenAPIConfig

from app import health
from app.auth.guards import auth_dependencies
from app.errors import EXCEPTION_HANDLERS
from app.health import Readiness
from app.http.edge import edge_middleware
from app.http.telemetry import structlog_plugin
from app.parts import HttpPart, provide
from app.platform import Platform
from app.roles.tuning import tune_gc

OPENAPI = OpenAPIConfig(title="Draftwire", version="0.1.0", path="/schema")


def build_app(platform: Platform, parts: Sequence[HttpPart], *, tune_process: bool = False) -> Litestar:
    """One Litestar app serving ``parts`` plus health and metrics, over ``platform``.

    ``tune_process``: the serving entry point's choice (GC tuning once warm); tests that build
    an app in their own process leave it off."""
    settings = platform.settings
    readiness = Readiness(redis=platform.redis, db=platform.db, database_url=settings.database_url,
                          queues=platform.queues)
    for part in parts:
        readiness.sections.update(part.health)

    @asynccontextmanager
    async def platform_lifespan(app: Litestar) -> AsyncIterator[None]:
        await platform.open()
        readiness.start()
        if tune_process:
            tune_gc()
        try:
            yield
        finally:
            await readiness.stop()
            await platform.close()

    dependencies: dict[str, Any] = {**auth_dependencies(settings.jwt_secret), "readiness": provide(readiness)}
    routes: list[Any] = list(health.ROUTES)
    for part in parts:
        routes.extend(part.routes)
        dependencies.update(part.dependencies)
    app = Litestar(
        route_handlers=routes,
        dependencies=dependencies,
        plugins=[structlog_plugin(settings)],
        middleware=[edge_middleware(settings, platform.limiter)],
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=[platform_lifespan, *(span for part in parts for span in part.lifespans)],
        openapi_config=OPENAPI,
        debug=False,
    )
    for part in parts:
        for hook in part.on_app:
            hook(app)
    return app
