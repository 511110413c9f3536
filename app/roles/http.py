"""Building a Litestar app from parts: the shared shape of the HTTP roles (api, gateway)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from litestar import Litestar

from app import health
from app.auth.guards import auth_dependencies
from app.errors import EXCEPTION_HANDLERS
from app.health import Readiness
from app.http.edge import MAX_BODY_BYTES, EdgeMiddleware
from app.http.hardening import cors_config, secure
from app.http.openapi import openapi_config
from app.http.telemetry import opentelemetry_plugin, prometheus_config, structlog_plugin
from app.parts import HttpPart, provide
from app.platform import Platform
from app.roles.tuning import tune_gc


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

    dependencies: dict[str, Any] = {**auth_dependencies(settings.jwt_verify_keys), "readiness": provide(readiness)}
    routes: list[Any] = list(health.ROUTES)
    for part in parts:
        routes.extend(part.routes)
        dependencies.update(part.dependencies)
    app = Litestar(
        route_handlers=routes,
        dependencies=dependencies,
        plugins=[structlog_plugin(settings), opentelemetry_plugin()],
        middleware=[prometheus_config().middleware, EdgeMiddleware(settings, platform.limiter)],
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=[platform_lifespan, *(span for part in parts for span in part.lifespans)],
        openapi_config=openapi_config(),
        cors_config=cors_config(settings),
        request_max_body_size=MAX_BODY_BYTES,
        debug=False,
    )
    for part in parts:
        for hook in part.on_app:
            hook(app)
    secure(app)
    return app
