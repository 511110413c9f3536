"""Issue and verify session tokens with PyJWT; the algorithm is pinned to HS256 both ways.

Tokens are signed with one key (``JWT_SECRET``) and verified with that key or, during a secret
rotation, the previous one (``JWT_SECRET_PREVIOUS``): see docs/runbooks/security.md.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import jwt

ALGORITHM = "HS256"
MAX_USER_ID_CHARS = 128
LEEWAY_S = 5
"""Clock skew tolerated on ``exp``, ``nbf`` and ``iat``, in seconds: a token is still accepted up
to 5 s after its ``exp`` and from 5 s before its ``nbf`` (hosts drift by less under NTP)."""
VERIFIED_CACHE_MAX = 10_000
"""Tokens remembered after a successful verification (every request carries one; PyJWT costs
tens of microseconds a decode). Only successes are kept, each until its own expiry."""

Keys = str | tuple[str, ...]
"""The verifying key, or the verifying keys with the signing key first."""

_verified: dict[tuple[tuple[str, ...], str], tuple[Principal, float]] = {}


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


def verify(keys: Keys, token: str) -> Principal:
    """The principal of a valid token; :class:`TokenError` for anything else.

    ``keys``: the signing key, or the verifying keys with the signing key first (a token signed
    with any of them is valid; :attr:`app.config.Settings.jwt_verify_keys`)."""
    keys = (keys,) if isinstance(keys, str) else keys
    key = (keys, token)
    known = _verified.get(key)
    if known is not None:
        if time.time() < known[1]:
            return known[0]
        del _verified[key]
    claims = _decode(keys, token)
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub or len(sub) > MAX_USER_ID_CHARS:
        raise TokenError("bad subject")
    principal = Principal(user_id=sub, admin=claims.get("role") == "admin")
    if len(_verified) >= VERIFIED_CACHE_MAX:
        _verified.clear()
    # PyJWT refuses a token once exp <= now - leeway; the cache keeps exactly that rule.
    exp = claims["exp"]
    if not isinstance(exp, int | float):  # PyJWT refuses a non-numeric exp already
        raise TokenError("bad expiry")
    _verified[key] = (principal, int(exp) + LEEWAY_S)  # PyJWT compares int(exp) too
    return principal


def _decode(keys: tuple[str, ...], token: str) -> dict[str, object]:
    for index, secret in enumerate(keys):
        try:
            claims: dict[str, object] = jwt.decode(
                token, secret, algorithms=[ALGORITHM], options={"require": ["sub", "exp"]}, leeway=LEEWAY_S
            )
            return claims
        except jwt.InvalidSignatureError:
            if index + 1 < len(keys):
                continue  # perhaps signed with the previous key
            raise TokenError("InvalidSignatureError") from None
        except jwt.PyJWTError as exc:
            raise TokenError(type(exc).__name__) from None
    raise TokenError("no verifying key")
