"""Session tokens (issue 16, point 2): every forged, expired or malformed token is 401 on HTTP,
WebSocket (close 1008) and SSE alike; a valid non-admin gets 403 on every admin route; a token
in the URL of a non-realtime route is ignored (401); clock skew inside LEEWAY_S is tolerated."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from app.auth.tokens import LEEWAY_S
from tests.realtime.support import ws_url
from tests.security.conftest import bearer
from tests.security.forged import forged_tokens, skewed
from tests.support.processes import ServiceProcess

ADMIN_ROUTES = [
    ("GET", "/api/admin/queues"),
    ("POST", "/api/admin/queues/draft-build/failed/some-job/retry"),
    ("DELETE", "/api/admin/queues/draft-build/failed"),
    ("POST", "/api/admin/channels/job:x/events"),
    ("GET", "/api/realtime/metrics"),
]


async def ws_close_code(url: str, **kwargs: Any) -> int | None:
    """Connect and read until the server closes (bounded); the close code."""
    async with connect(url, open_timeout=10, **kwargs) as ws:
        with contextlib.suppress(ConnectionClosed):
            async with asyncio.timeout(10):
                while True:
                    await ws.recv()
        return ws.close_code


async def test_forged_tokens_are_refused_on_http(sec_api: ServiceProcess, http: httpx.AsyncClient) -> None:
    """Header and cookie alike: 401 with the contract's body, never the data."""
    for name, token in forged_tokens().items():  # made now: "expired" and "not yet" are relative
        for headers in (bearer(token), {"Cookie": f"session={token}"}):
            r = await http.get(f"{sec_api.url}/api/drafts", headers=headers)
            assert r.status_code == 401, (name, r.status_code, r.text)
            assert r.json()["error"] == "unauthorized", name
        r = await http.get(f"{sec_api.url}/api/admin/queues", headers=bearer(token))
        assert r.status_code == 401, (name, r.text)


async def test_forged_tokens_are_refused_on_websocket(sec_api: ServiceProcess) -> None:
    """?token=, cookie and Authorization header: the socket is closed with 1008."""
    for name, token in forged_tokens().items():  # made now: "expired" and "not yet" are relative
        assert await ws_close_code(ws_url(sec_api.url, token)) == 1008, name
        assert await ws_close_code(ws_url(sec_api.url), additional_headers={"Cookie": f"session={token}"}) == 1008, name
        assert await ws_close_code(ws_url(sec_api.url), additional_headers=bearer(token)) == 1008, name


async def test_forged_tokens_are_refused_on_sse(sec_api: ServiceProcess, http: httpx.AsyncClient) -> None:
    """?token= and header alike: 401 before any stream starts."""
    for name, token in forged_tokens().items():  # made now: "expired" and "not yet" are relative
        for params, headers in (({"token": token}, {}), ({}, bearer(token))):
            r = await http.get(f"{sec_api.url}/api/events", params={"channel": "job:abc", **params}, headers=headers)
            assert r.status_code == 401, (name, r.status_code, r.text)
            assert r.headers["content-type"].startswith("application/json"), name


async def test_valid_non_admin_gets_403_on_every_admin_route(
    sec_api: ServiceProcess, http: httpx.AsyncClient, mint: Callable[..., str]
) -> None:
    """A real session without the admin role: 403 forbidden on each admin route, and the list
    above is every admin route of the OpenAPI document (a new one cannot be missed)."""
    schema = (await http.get(f"{sec_api.url}/schema/openapi.json")).json()
    documented = {(m.upper(), p) for p, item in schema["paths"].items() for m, op in item.items() if "403" in op["responses"]}
    assert documented == {
        ("GET", "/api/admin/queues"), ("POST", "/api/admin/queues/{queue}/failed/{job_id}/retry"),
        ("DELETE", "/api/admin/queues/{queue}/failed"), ("POST", "/api/admin/channels/{channel}/events"),
        ("GET", "/api/realtime/metrics"),
    }
    token = mint("plain-user")
    for method, path in ADMIN_ROUTES:
        r = await http.request(method, f"{sec_api.url}{path}", headers=bearer(token), json={"type": "x.y", "data": {}})
        assert (r.status_code, r.json()["error"]) == (403, "forbidden"), (method, path, r.text)


async def test_token_in_url_of_http_route_is_ignored(
    sec_api: ServiceProcess, http: httpx.AsyncClient, mint: Callable[..., str]
) -> None:
    """?token= is for EventSource and WebSocket only: on any other route it does not sign in
    (URLs end up in proxy logs and browser history)."""
    token = mint("url-user", admin=True)
    for path in ("/api/drafts", "/api/admin/queues", "/api/realtime/metrics", "/api/jobs/x"):
        r = await http.get(f"{sec_api.url}{path}", params={"token": token})
        assert r.status_code == 401, (path, r.text)


@pytest.mark.parametrize("seconds", [-(LEEWAY_S - 2), LEEWAY_S - 2])
async def test_clock_skew_inside_the_leeway_is_tolerated(
    seconds: int, sec_api: ServiceProcess, http: httpx.AsyncClient
) -> None:
    """A token that expired, or becomes valid, up to LEEWAY_S (5 s) from now is accepted: hosts
    whose clocks drift a little do not log people out."""
    r = await http.get(f"{sec_api.url}/api/drafts", headers=bearer(skewed(seconds)))
    assert r.status_code == 200, r.text
