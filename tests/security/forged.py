"""Tokens an attacker could bring: each must be refused everywhere a token is read."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import time

import jwt

from app.auth.tokens import LEEWAY_S
from tests.support.processes import TEST_SECRET

OTHER_SECRET = "another-secret-nobody-deployed-0123456789"  # noqa: S105 - the wrong key on purpose


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _claims(**extra: object) -> dict[str, object]:
    now = int(time.time())
    return {"sub": "mallory", "iat": now, "exp": now + 600, **extra}


def _hmac_signed(alg: str, key: str, claims: dict[str, object]) -> str:
    """Signed by hand (PyJWT warns about, and rightly would not help with, keys like these)."""
    digest = {"HS256": hashlib.sha256, "HS512": hashlib.sha512}[alg]
    signing_input = f"{_b64(json.dumps({'alg': alg, 'typ': 'JWT'}).encode())}.{_b64(json.dumps(claims).encode())}"
    return f"{signing_input}.{_b64(hmac.new(key.encode(), signing_input.encode(), digest).digest())}"


def _unsigned_as(alg: str, signature: bytes) -> str:
    header = _b64(json.dumps({"alg": alg, "typ": "JWT"}).encode())
    return f"{header}.{_b64(json.dumps(_claims()).encode())}.{_b64(signature)}"


def _rs256_confusion() -> str:
    """Claims RS256 (a 256-byte signature-shaped blob): a server that takes the algorithm from
    the header would reach for a public key; ours has only HS256."""
    return _unsigned_as("RS256", os.urandom(256))


def _tampered() -> str:
    """A real token for mallory whose payload was edited to say alice (signature unchanged)."""
    header, _, signature = jwt.encode(_claims(), TEST_SECRET, algorithm="HS256").split(".")
    payload = _b64(json.dumps(_claims(sub="alice")).encode())
    return f"{header}.{payload}.{signature}"


def _forged_admin() -> str:
    """An admin claim added to a real token's payload, re-signed with a guessed key."""
    return _hmac_signed("HS256", "admin", _claims(role="admin"))


def forged_tokens() -> dict[str, str]:
    """name -> token; every one must be refused with 401."""
    now = int(time.time())
    return {
        "alg_none": jwt.encode(_claims(), key=None, algorithm="none"),
        "alg_none_uppercase": _unsigned_as("NONE", b""),
        "hs512_same_secret": _hmac_signed("HS512", TEST_SECRET, _claims()),
        "rs256_confusion": _rs256_confusion(),
        "wrong_key": jwt.encode(_claims(), OTHER_SECRET, algorithm="HS256"),
        "expired": jwt.encode(_claims(exp=now - LEEWAY_S - 5), TEST_SECRET, algorithm="HS256"),
        "not_yet_valid": jwt.encode(_claims(nbf=now + LEEWAY_S + 60), TEST_SECRET, algorithm="HS256"),
        "missing_sub": jwt.encode({"exp": now + 600}, TEST_SECRET, algorithm="HS256"),
        "empty_sub": jwt.encode(_claims(sub=""), TEST_SECRET, algorithm="HS256"),
        "missing_exp": jwt.encode({"sub": "mallory"}, TEST_SECRET, algorithm="HS256"),
        "tampered_payload": _tampered(),
        "forged_admin": _forged_admin(),
        "garbage": "not.a.jwt",
    }


def skewed(seconds: float) -> str:
    """A valid token whose exp (or nbf, if positive) sits ``seconds`` inside the leeway."""
    now = int(time.time())
    if seconds > 0:
        return jwt.encode(_claims(nbf=now + int(seconds)), TEST_SECRET, algorithm="HS256")
    return jwt.encode(_claims(exp=now + int(seconds)), TEST_SECRET, algorithm="HS256")
