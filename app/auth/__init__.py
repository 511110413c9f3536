"""Session tokens (JWT, HS256 pinned) and the request's user."""

from app.auth.guards import AdminUser, CurrentUser
from app.auth.tokens import Principal, TokenError, issue, verify

__all__ = ("AdminUser", "CurrentUser", "Principal", "TokenError", "issue", "verify")
