"""Admission and limits: each refusal has the contract's close code or error frame, and bad input
never takes the socket handler or the process down."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable

import httpx
import pytest
from redis.asyncio import Redis

from tests.realtime.conftest import RT_ENV, Realtime
from tests.realtime.support import Client, channel_name

LIMITS_ENV = {
    **RT_ENV,
    "REALTIME_MAX_CONNECTIONS": "4",
    "REALTIME_MAX_PER_CLIENT": "2",
    "REALTIME_ALLOWED_ORIGINS": "https://app.example",
}


@pytest.fixture(scope="module")
def limits_api(rt_stack: Callable[..., Realtime]) -> Realtime:
    return rt_stack(**LIMITS_ENV)


async def _closed_with(base: str, token: str | None, **kwargs: object) -> tuple[int | None, str]:
    client = await Client.open(base, token, **kwargs)
    code = await client.wait_closed(10)
    return code, client.close_reason


async def test_auth_failures_close_1008(limits_api: Realtime, token: Callable[..., str]) -> None:
    """No token, a forged token and an expired token are each closed with 1008."""
    assert (await _closed_with(limits_api.url, None))[0] == 1008
    assert (await _closed_with(limits_api.url, token() + "x"))[0] == 1008
    assert (await _closed_with(limits_api.url, token(ttl=-60)))[0] == 1008
    assert limits_api.metric("realtime_connections_rejected_total", {"reason": "unauthorized"}) >= 3


async def test_session_cookie_is_accepted(limits_api: Realtime, token: Callable[..., str]) -> None:
    """The ``session`` cookie authenticates a socket as well as ``?token=``."""
    client = await Client.open(limits_api.url, None, additional_headers={"Cookie": f"session={token()}"})
    await client.send({"op": "ping"})
    await client.wait_op("pong")
    await client.close()


async def test_origin_check_closes_1008(limits_api: Realtime, token: Callable[..., str]) -> None:
    """An Origin outside REALTIME_ALLOWED_ORIGINS is closed with 1008; a listed one is served."""
    assert (await _closed_with(limits_api.url, token(), origin="https://evil.example"))[0] == 1008
    ok = await Client.open(limits_api.url, token(), origin="https://app.example")
    await ok.send({"op": "ping"})
    await ok.wait_op("pong")
    await ok.close()
    assert limits_api.metric("realtime_connections_rejected_total", {"reason": "origin"}) >= 1


async def test_same_host_origin_when_list_empty(rt_api: Realtime, token: Callable[..., str]) -> None:
    """With REALTIME_ALLOWED_ORIGINS empty only the API's own host may open a socket."""
    host = rt_api.url.removeprefix("http://")
    assert (await _closed_with(rt_api.url, token(), origin="https://elsewhere.example"))[0] == 1008
    ok = await Client.open(rt_api.url, token(), origin=f"http://{host}")
    await ok.send({"op": "ping"})
    await ok.wait_op("pong")
    await ok.close()


async def test_connection_quotas_close_1013(limits_api: Realtime, token: Callable[..., str]) -> None:
    """A 3rd socket of one user (MAX_PER_CLIENT=2) and a 5th socket overall (MAX_CONNECTIONS=4) get 1013."""
    alice, bob = token(), token()
    held = [await Client.open(limits_api.url, alice) for _ in range(2)]
    for c in held:
        await c.send({"op": "ping"})
        await c.wait_op("pong")
    code, reason = await _closed_with(limits_api.url, alice)
    assert code == 1013 and "client" in reason
    held += [await Client.open(limits_api.url, bob) for _ in range(2)]
    for c in held[2:]:
        await c.send({"op": "ping"})
        await c.wait_op("pong")
    assert (await _closed_with(limits_api.url, token()))[0] == 1013
    assert limits_api.metric("realtime_connections_rejected_total", {"reason": "max_connections"}) >= 1
    assert limits_api.metric("realtime_connections_rejected_total", {"reason": "max_per_client"}) >= 1
    for c in held:
        await c.close()


async def test_max_subscriptions_and_not_found(
    rt_api: Realtime, token: Callable[..., str], redis: Redis
) -> None:
    """A 6th subscription gets error max_subscriptions; another user's draft and a channel that does
    not exist both get not_found (the same answer); the user's own draft is served."""
    user, other = f"user-{uuid.uuid4().hex[:8]}", f"user-{uuid.uuid4().hex[:8]}"
    mine, theirs = str(uuid.uuid4()), str(uuid.uuid4())
    await redis.hset(f"dw:draft:{mine}", mapping={"owner": user})
    await redis.hset(f"dw:draft:{theirs}", mapping={"owner": other})
    admin = await Client.open(rt_api.url, token(admin=True))
    for _ in range(5):
        await admin.subscribe(channel_name())
    extra = channel_name()
    await admin.subscribe(extra)
    err = await admin.wait_op("error", extra)
    assert err["code"] == "max_subscriptions"
    await admin.close()

    client = await Client.open(rt_api.url, token(user))
    await client.subscribe(f"draft:{theirs}")
    await client.subscribe(f"draft:{uuid.uuid4()}")
    await client.subscribe(channel_name("job"))
    await client.subscribe(f"draft:{mine}")
    await client.wait_op("caught_up", f"draft:{mine}")
    errors = [f for f in client.frames if f["op"] == "error"]
    assert [e["code"] for e in errors] == ["not_found"] * 3
    assert len({e["detail"] for e in errors}) == 1
    await client.close()


async def test_bad_frames_get_error_frames(rt_api: Realtime, token: Callable[..., str]) -> None:
    """Unparseable frames, unknown ops, missing fields, negative/huge/non-integer/past-head sinceSeq
    and binary garbage each get a bad_request error frame, and the socket keeps working."""
    client = await Client.open(rt_api.url, token(admin=True))
    empty = channel_name()
    bad = [
        "not json", "[1, 2]", "null", json.dumps({"op": "dance"}), json.dumps({"nop": 1}),
        json.dumps({"op": "subscribe"}), json.dumps({"op": "unsubscribe", "channel": 5}),
        json.dumps({"op": "subscribe", "channel": "bogus:1"}),
        json.dumps({"op": "subscribe", "channel": channel_name(), "sinceSeq": -1}),
        json.dumps({"op": "subscribe", "channel": channel_name(), "sinceSeq": 2**70}),
        json.dumps({"op": "subscribe", "channel": channel_name(), "sinceSeq": "5"}),
        json.dumps({"op": "subscribe", "channel": channel_name(), "sinceSeq": 1.5}),
        json.dumps({"op": "subscribe", "channel": empty, "sinceSeq": 99}),
    ]
    for frame in bad:
        await client.send(frame)
    await client.ws.send(b"\x00\xff\xfe")
    await client.send({"op": "ping"})
    await client.wait_op("pong")
    errors = [f for f in client.frames if f["op"] == "error"]
    assert len(errors) == len(bad) + 1
    assert {e["code"] for e in errors} == {"bad_request"}
    assert all(e["detail"] for e in errors)
    await client.close()
    assert httpx.get(f"{rt_api.url}/healthz").status_code == 200


async def test_frame_too_large_closes_1009(rt_api: Realtime, token: Callable[..., str]) -> None:
    """A client frame over 16 KiB is closed with 1009."""
    client = await Client.open(rt_api.url, token())
    await client.send(json.dumps({"op": "ping", "pad": "x" * 20000}))
    assert await client.wait_closed(10) == 1009


async def test_idle_socket_is_closed(rt_stack: Callable[..., Realtime], token: Callable[..., str]) -> None:
    """A socket that sends nothing for REALTIME_IDLE_TIMEOUT is closed; one that pings stays open."""
    api = rt_stack(**RT_ENV, REALTIME_IDLE_TIMEOUT="1s")
    idle = await Client.open(api.url, token())
    busy = await Client.open(api.url, token())
    for _ in range(4):
        await busy.send({"op": "ping"})
        await asyncio.sleep(0.4)
    assert await idle.wait_closed(5) == 1000 and idle.close_reason == "idle timeout"
    assert busy.close_code is None
    await busy.close()
    api.stop()
