"""Security headers on every HTTP response, and CORS only where a setting allows it.

The headers are added by wrapping the app's outermost ASGI handler, so they reach every response
(the router's own 404 and 405, error bodies, the schema, SSE streams) at the cost of one list
concatenation per response: the autosave path stays as fast as it was. We serve JSON and event
streams, never a page, so the content policy forbids everything (OWASP REST Security Cheat Sheet).
"""

from __future__ import annotations

from collections.abc import Awaitable

from litestar import Litestar
from litestar.config.cors import CORSConfig
from litestar.enums import ScopeType
from litestar.routes import HTTPRoute
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from app.config import Settings

SECURITY_HEADERS: list[tuple[bytes, bytes]] = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"),
    (b"cross-origin-resource-policy", b"same-origin"),
    (b"server", b"draftwire"),
]
"""What every HTTP response carries: no MIME sniffing, never framed, no referrer leaves, nothing
loads or runs if a response is ever opened as a page. ``Server`` replaces Granian's own banner
(Granian adds ``server: granian`` only when the app sent none). HSTS is the TLS terminator's."""


def secure(app: Litestar) -> None:
    """Put :data:`SECURITY_HEADERS` on every HTTP response of ``app`` (wrapping its outermost
    handler), and answer ``OPTIONS`` with every method of the path in ``Allow``."""
    app.asgi_handler = with_security_headers(app.asgi_handler, _allow_by_path(app))


def _allow_by_path(app: Litestar) -> dict[str, bytes]:
    # Litestar builds a path's automatic OPTIONS answer when its first handler registers, so a
    # path served by two handlers (GET and POST /api/drafts/{id}/build) would leave one out.
    return {
        route.path_format: ", ".join(sorted(route.methods)).encode()
        for route in app.routes
        if isinstance(route, HTTPRoute)
    }


def with_security_headers(inner: ASGIApp, allow: dict[str, bytes] | None = None) -> ASGIApp:
    """``inner`` with :data:`SECURITY_HEADERS` added to each HTTP response start; ``allow``:
    path template -> the ``Allow`` value of an ``OPTIONS`` answer."""
    allow = allow or {}

    async def secured(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await inner(scope, receive, send)
            return
        options = scope["method"] == "OPTIONS"

        def send_secured(message: Message) -> Awaitable[None]:
            if message["type"] == "http.response.start":
                own = message.get("headers", ())
                present = {name.lower() for name, _ in own}
                headers = [*own, *(h for h in SECURITY_HEADERS if h[0] not in present)]
                methods = allow.get(scope.get("path_template", "")) if options else None
                if methods is not None:
                    headers = [(k, methods if k.lower() == b"allow" else v) for k, v in headers]
                message["headers"] = headers
            return send(message)

        await inner(scope, receive, send_secured)

    return secured


def cors_config(settings: Settings) -> CORSConfig | None:
    """None (CORS off: no ``Access-Control-*`` header, browsers keep other sites out) unless
    ``CORS_ALLOWED_ORIGINS`` names origins; then exactly those, with credentials (the cookie)."""
    if not settings.cors_allowed_origins:
        return None
    return CORSConfig(
        allow_origins=list(settings.cors_allowed_origins),
        allow_methods=["GET", "POST", "DELETE"],
        allow_headers=["Authorization", "Content-Type", "Last-Event-ID"],
        allow_credentials=True,
        max_age=600,
    )
