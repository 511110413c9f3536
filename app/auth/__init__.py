"""Session tokens (JWT, HS256 pinned) and the request's user."""

from app.auth.tokens import Principal, TokenError, issue, verify

__all__ = ("Principal", "TokenError", "issue", "verify")
