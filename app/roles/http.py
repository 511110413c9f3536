"""Building a Litestar app from parts: the shared shape of the HTTP roles (api, gateway)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from litestar import Litestar
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Receive, Scope, Send

from app import health
from app.auth.guards import auth_dependencies
from app.errors import EXCEPTION_HANDLERS
from app.health import Readiness
from app.http.edge import MAX_BODY_BYTES, edge_middleware
from app.http.hardening import cors_config, secure
from app.http.openapi import openapi_config
from app.http.telemetry import structlog_plugin
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
    edge = edge_middleware(settings, platform.limiter)
    app = Litestar(
        route_handlers=routes,
        dependencies=dependencies,
        plugins=[structlog_plugin(settings)],
        middleware=[edge],
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=[platform_lifespan, *(span for part in parts for span in part.lifespans)],
        openapi_config=openapi_config(),
        cors_config=cors_config(settings),
        request_max_body_size=MAX_BODY_BYTES,
        debug=False,
    )
    # With CORS allowed, Litestar's CORS middleware must see every request: no fast paths then.
    fast = {key: edge(handler) for part in parts for key, handler in part.fast_paths.items()}
    if fast and not settings.cors_allowed_origins:
        _install_fast_paths(app, fast)
    for part in parts:
        for hook in part.on_app:
            hook(app)
    secure(app)
    return app


def _install_fast_paths(app: Litestar, fast: dict[tuple[str, str], ASGIApp]) -> None:
    """Serve the parts' fast paths in front of Litestar's router (each already inside the edge);
    everything else, and these paths' other methods, go to Litestar as before.

    A key's path is exact (``/api/autosave``) or a template with one parameter that spans one
    segment (``/api/admin/channels/{channel}/events``); a path the template does not match
    exactly (a trailing slash, an empty segment) goes to Litestar, which answers as it always has."""
    inner = app.asgi_handler
    exact = {key: handler for key, handler in fast.items() if "{" not in key[1]}
    templated = [(method, *_split_template(path), path, handler)
                 for (method, path), handler in fast.items() if "{" in path]

    async def front(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == ScopeType.HTTP:
            method, path = scope["method"], scope["path"]
            handler = exact.get((method, path))
            if handler is not None:
                scope["path_template"] = path
                await handler(scope, receive, send)
                return
            for want, prefix, name, suffix, template, handler in templated:
                if method == want and path.startswith(prefix) and path.endswith(suffix):
                    value = path[len(prefix):len(path) - len(suffix)]
                    if value and "/" not in value:
                        scope["path_template"] = template
                        scope["path_params"] = {name: value}
                        await handler(scope, receive, send)
                        return
        await inner(scope, receive, send)

    app.asgi_handler = front


def _split_template(template: str) -> tuple[str, str, str]:
    """``/a/{x}/b`` -> (``/a/``, ``x``, ``/b``)."""
    prefix, rest = template.split("{", 1)
    name, suffix = rest.split("}", 1)
    if "{" in suffix or ":" in name:
        raise ValueError(f"fast path {template!r}: one plain {{parameter}} at most")
    return prefix, name, suffix
