"""``/static/<file>`` (the browser client and the demo's assets), ``/demo`` (the demo page) and,
in dev only, ``POST /demo/token`` (a session token for any user id, so the demo can sign in).

Every response carries a strict Content-Security-Policy: the page has no inline script or style,
talks only to its own origin (HTTP and WebSocket) and cannot be framed.
"""

from __future__ import annotations

import hashlib
import re
from importlib import resources
from typing import Any

import msgspec
from litestar import Request, Response, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath

from app.auth import issue
from app.auth.tokens import MAX_USER_ID_CHARS
from app.config import Settings
from app.errors import ApiError

CSP = "default-src 'self'; connect-src 'self' ws: wss:; frame-ancestors 'none'"
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
STATIC_CACHE = "public, max-age=300, must-revalidate"
"""Unversioned file names: a deploy reaches browsers within 5 minutes; the ETag makes a
revalidation a 304 without a body."""
DEV_TOKEN_TTL_S = 3600
_USER_ID = re.compile(r"^[A-Za-z0-9._@:-]+$")
_TYPES = {".js": "text/javascript", ".css": "text/css", ".html": "text/html", ".svg": "image/svg+xml"}
"""Litestar adds ``; charset=utf-8`` to text types itself."""


class Asset(msgspec.Struct, frozen=True):
    body: bytes
    media_type: str
    etag: str


def _load_assets() -> dict[str, Asset]:
    """Every shipped file of ``app/web/static``, read once (they are small and never change)."""
    assets = {}
    for entry in resources.files("app.web").joinpath("static").iterdir():
        suffix = entry.name[entry.name.rfind("."):]
        if entry.is_file() and suffix in _TYPES:
            body = entry.read_bytes()
            assets[entry.name] = Asset(body, _TYPES[suffix], f'"{hashlib.sha256(body).hexdigest()[:20]}"')
    return assets


ASSETS = _load_assets()


def _serve(request: Request[Any, Any, Any], asset: Asset, cache: str) -> Response[bytes]:
    headers = {**SECURITY_HEADERS, "Cache-Control": cache, "ETag": asset.etag}
    if request.headers.get("if-none-match") == asset.etag:
        return Response(b"", status_code=304, headers=headers)
    return Response(asset.body, media_type=asset.media_type, headers=headers)


@get("/static/{name:str}", include_in_schema=False)
async def static_file(request: Request[Any, Any, Any], name: FromPath[str]) -> Response[bytes]:
    """The client (``draftwire.js`` and the modules it imports) and the demo's script and style."""
    asset = ASSETS.get(name)
    if asset is None or name.endswith(".html"):
        raise ApiError(404, "not_found", "No such file; the client is at /static/draftwire.js.")
    return _serve(request, asset, STATIC_CACHE)


@get("/demo", include_in_schema=False)
async def demo_page(request: Request[Any, Any, Any]) -> Response[bytes]:
    """The demo page: sign in, edit a draft, watch saves and builds arrive, see live numbers."""
    return _serve(request, ASSETS["demo.html"], "no-cache")


@get("/demo/config", include_in_schema=False)
async def demo_config(web_settings: NamedDependency[Settings]) -> Response[dict[str, bool]]:
    """What the demo page may offer: dev sign-in only where ``POST /demo/token`` exists."""
    settings = web_settings
    return Response({"devSignIn": settings.is_dev}, headers={**SECURITY_HEADERS, "Cache-Control": "no-store"})


@post("/demo/token", status_code=201, include_in_schema=False)
async def dev_token(
    request: Request[Any, Any, Any], web_settings: NamedDependency[Settings]
) -> Response[dict[str, Any]]:
    """Dev only (registered only when ``DRAFTWIRE_ENV=dev``): ``{"userId": "...", "admin": false}``
    -> a session token for that user, valid one hour."""
    settings = web_settings
    try:
        body = msgspec.json.decode(await request.body())
    except msgspec.DecodeError:
        raise ApiError(400, "malformed_json", 'The body must be JSON like {"userId": "alice"}.') from None
    user_id = body.get("userId") if isinstance(body, dict) else None
    admin = body.get("admin", False) if isinstance(body, dict) else False
    if not isinstance(user_id, str) or not 0 < len(user_id) <= MAX_USER_ID_CHARS or not _USER_ID.match(user_id):
        raise ApiError(422, "invalid_user_id",
                       f"userId must be 1-{MAX_USER_ID_CHARS} letters, digits or . _ @ : - characters.")
    if not isinstance(admin, bool):
        raise ApiError(422, "invalid_request", "admin must be true or false.")
    token = issue(settings.jwt_secret, user_id, admin=admin, ttl_seconds=DEV_TOKEN_TTL_S)
    return Response({"token": token, "userId": user_id, "admin": admin, "expiresIn": DEV_TOKEN_TTL_S},
                    status_code=201, headers={**SECURITY_HEADERS, "Cache-Control": "no-store"})


ROUTES: list[Any] = [static_file, demo_page, demo_config]
"""Served in every environment."""
DEV_ROUTES: list[Any] = [dev_token]
"""Served only when ``settings.is_dev``."""


def routes_for(settings: Settings) -> list[Any]:
    """:data:`ROUTES`, plus :data:`DEV_ROUTES` in dev: in any other environment the dev-token
    endpoint does not exist at all (404 like any unknown path)."""
    return [*ROUTES, *(DEV_ROUTES if settings.is_dev else [])]
