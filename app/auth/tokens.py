"""Issue and verify session tokens with PyJWT; the algorithm is pinned to HS256 both ways."""

from __future__ import annotations

import time
from dataclasses import dataclass

import jwt

ALGORITHM = "HS256"
MAX_USER_ID_CHARS = 128
LEEWAY_S = 5
VERIFIED_CACHE_MAX = 10_000
"""Tokens remembered after a successful verification (every request carries one; PyJWT costs
tens of microseconds a decode). Only successes are kept, each until its own expiry."""

_verified: dict[tuple[str, str], tuple[Principal, float]] = {}


class TokenError(Exception):
    """The token is missing, malformed, forged or expired."""


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: a user id and whether they hold the admin role."""

    user_id: str
    admin: bool = False


def issue(secret: str, user_id: str, *, admin: bool = False, ttl_seconds: float = 3600) -> str:
    """A signed token for ``user_id`` that expires in ``ttl_seconds``."""
    if not user_id or len(user_id) > MAX_USER_ID_CHARS:
        raise ValueError(f"user id must be 1..{MAX_USER_ID_CHARS} characters")
    now = int(time.time())
    claims: dict[str, object] = {"sub": user_id, "iat": now, "exp": now + int(ttl_seconds)}
    if admin:
        claims["role"] = "admin"
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def verify(secret: str, token: str) -> Principal:
    """The principal of a valid token; :class:`TokenError` for anything else."""
    key = (secret, token)
    known = _verified.get(key)
    if known is not None:
        if time.time() < known[1]:
            return known[0]
        del _verified[key]
    try:
        claims = jwt.decode(
            token, secret, algorithms=[ALGORITHM], options={"require": ["sub", "exp"]}, leeway=LEEWAY_S
        )
    except jwt.PyJWTError as exc:
        raise TokenError(type(exc).__name__) from None
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub or len(sub) > MAX_USER_ID_CHARS:
        raise TokenError("bad subject")
    principal = Principal(user_id=sub, admin=claims.get("role") == "admin")
    if len(_verified) >= VERIFIED_CACHE_MAX:
        _verified.clear()
    # PyJWT refuses a token once exp <= now - leeway; the cache keeps exactly that rule.
    _verified[key] = (principal, int(claims["exp"]) + LEEWAY_S)  # PyJWT compares int(exp) too
    return principal
