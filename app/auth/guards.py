"""Finding the caller of an HTTP request or a socket: ``Authorization: Bearer``, the ``session``
cookie, or (for WebSocket and SSE, where browsers cannot set headers) ``?token=``."""

from __future__ import annotations

from typing import Any, TypeAlias

from litestar import Request
from litestar.connection import ASGIConnection
from litestar.di import NamedDependency, Provide
from litestar.enums import ScopeType

from app.auth.tokens import Keys, Principal, TokenError, verify
from app.errors import ApiError

_STATE_KEY = "draftwire_principal"

CurrentUser: TypeAlias = NamedDependency[Principal]
"""A handler parameter ``user: CurrentUser`` is the caller (401 without a valid token)."""
AdminUser: TypeAlias = NamedDependency[Principal]
"""A handler parameter ``admin: AdminUser`` is an admin caller (401, or 403 without the role)."""


def token_of(connection: ASGIConnection[Any, Any, Any, Any], *, allow_query: bool = False) -> str | None:
    header = connection.headers.get("authorization", "")
    if header[:7].lower() == "bearer ":
        return header[7:].strip() or None
    cookie = connection.cookies.get("session")
    if cookie:
        return cookie
    if allow_query:
        return connection.query_params.get("token") or None
    return None


def principal_of(
    connection: ASGIConnection[Any, Any, Any, Any], secret: Keys, *, allow_query: bool = False
) -> Principal | None:
    """The caller, or None when there is no valid token. Cached on the connection."""
    state = connection.scope.setdefault("state", {})
    if _STATE_KEY in state:
        return state[_STATE_KEY]  # type: ignore[no-any-return]
    token = token_of(connection, allow_query=allow_query)
    principal = None
    if token:
        try:
            principal = verify(secret, token)
        except TokenError:
            principal = None
    state[_STATE_KEY] = principal
    return principal


def require_user(connection: ASGIConnection[Any, Any, Any, Any], secret: Keys) -> Principal:
    principal = principal_of(connection, secret, allow_query=connection.scope["type"] == ScopeType.WEBSOCKET)
    if principal is None:
        raise ApiError(401, "unauthorized", "Sign in again: the session token is missing, invalid or expired.")
    return principal


def require_admin(connection: ASGIConnection[Any, Any, Any, Any], secret: Keys) -> Principal:
    principal = require_user(connection, secret)
    if not principal.admin:
        raise ApiError(403, "forbidden", "This needs the admin role.")
    return principal


def auth_dependencies(secret: Keys) -> dict[str, Provide]:
    """Litestar dependencies ``user`` (401 without a valid token) and ``admin`` (also 403 without
    the admin role): a handler declares ``user: Principal`` or ``admin: Principal`` and gets the
    caller, typed, or never runs."""

    def user(request: Request[Any, Any, Any]) -> Principal:
        return require_user(request, secret)

    def admin(request: Request[Any, Any, Any]) -> Principal:
        return require_admin(request, secret)

    return {
        "user": Provide(user, sync_to_thread=False),
        "admin": Provide(admin, sync_to_thread=False),
    }
