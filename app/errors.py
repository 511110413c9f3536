"""The error shape of the contract: ``{"error": "<code>", "detail": "<one sentence>"}``.

Handlers raise :class:`ApiError`; framework errors (404 route, 405, body too large, validation)
are translated here, so every 4xx/5xx body has the same shape and no bad input becomes a 500.
"""

from __future__ import annotations

from typing import Any

import psycopg
from litestar import MediaType, Request, Response
from litestar.exceptions import HTTPException, NotAuthorizedException, ValidationException
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR
from psycopg_pool import PoolTimeout

from observability.logging import get_logger

log = get_logger(__name__)

# Default code for a framework status when the handler did not choose one.
_STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    429: "rate_limited",
    503: "service_unavailable",
}
_STATUS_DETAILS = {
    401: "Sign in again: the session token is missing, invalid or expired.",
    403: "This needs the admin role.",
    404: "Nothing here: check the path and the id.",
    405: "This path does not accept that method; see the API reference in the README.",
    413: "The request body is larger than this endpoint accepts.",
}


class ApiError(Exception):
    """An error a client can act on: status, stable code, one sentence, optional headers."""

    def __init__(self, status: int, code: str, detail: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.headers = headers or {}


def not_found(what: str = "resource") -> ApiError:
    """The one 404 for 'absent' and 'someone else's': never reveal that it exists."""
    return ApiError(404, "not_found", f"No {what} with that id belongs to you.")


def unavailable(code: str, detail: str, retry_after: int = 5) -> ApiError:
    return ApiError(503, code, detail, headers={"Retry-After": str(retry_after)})


def error_body(code: str, detail: str) -> dict[str, str]:
    return {"error": code, "detail": detail}


def _response(status: int, code: str, detail: str, headers: dict[str, str] | None = None) -> Response[Any]:
    return Response(
        content=error_body(code, detail), status_code=status, media_type=MediaType.JSON, headers=headers
    )


def api_error_handler(_: Request[Any, Any, Any], exc: ApiError) -> Response[Any]:
    return _response(exc.status, exc.code, exc.detail, exc.headers)


def http_exception_handler(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    status = exc.status_code
    if status >= HTTP_500_INTERNAL_SERVER_ERROR:
        return internal_error_handler(request, exc)
    code = _STATUS_CODES.get(status, "bad_request")
    if isinstance(exc, ValidationException):
        detail = "The request parameters are not valid: check the query string and path."
    elif isinstance(exc, NotAuthorizedException):
        detail = _STATUS_DETAILS[401]
    else:
        detail = _STATUS_DETAILS.get(status) or str(exc.detail)
    headers = dict(exc.headers or {})
    return _response(status, code, detail, headers)


DEPENDENCY_DOWN = (psycopg.OperationalError, PoolTimeout)
"""Postgres unreachable or the pool exhausted: the client should retry, not report a bug."""


def database_unavailable() -> ApiError:
    return unavailable("database_unavailable", "The database is not answering right now; retry shortly.")


def dependency_down(route: str | None, exc: Exception) -> ApiError:
    """The 503 for a dependency that is down, logged (route template, error type) for on-call."""
    log.warning("database_unavailable", route=route, error=type(exc).__name__)
    return database_unavailable()


def dependency_error_handler(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    return api_error_handler(request, dependency_down(request.scope.get("path_template"), exc))


INTERNAL_ERROR_DETAIL = "Something failed on our side; retry shortly and report it if it persists."
"""The detail of every 500 (Litestar's routes and the raw fast paths alike)."""


def internal_error_handler(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    log.error("unhandled_error", route=request.scope.get("path_template"), error=type(exc).__name__, exc_info=exc)
    return _response(500, "internal_error", INTERNAL_ERROR_DETAIL)


EXCEPTION_HANDLERS: dict[Any, Any] = {
    ApiError: api_error_handler,
    HTTPException: http_exception_handler,
    **dict.fromkeys(DEPENDENCY_DOWN, dependency_error_handler),
    Exception: internal_error_handler,
}
