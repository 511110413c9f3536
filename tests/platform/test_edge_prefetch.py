"""The edge starts reading a request's body before it waits on the rate limit (``_Prefetch``):
the app still gets every message once and in order, a refused request leaves nothing behind, and
requests without a body or with their own limit are untouched. Against a real Redis limiter."""

from __future__ import annotations

import asyncio
import gc
import uuid
import warnings
from collections.abc import AsyncIterator
from typing import Any

import pytest

from app.config import load
from app.http.edge import EdgeApp, _Children, _Prefetch
from app.ratelimit import Limit, RateLimiter
from app.redisconn import Pipelined, redis_client
from tests.support.processes import TEST_SECRET

pytestmark = pytest.mark.live


class Recorder:
    """What happened, in order: the server's receive calls, the limiter, and the app."""

    def __init__(self) -> None:
        self.events: list[str] = []


class ObservedLimiter(RateLimiter):
    def __init__(self, recorder: Recorder, *args: Any) -> None:
        super().__init__(*args)
        self.recorder = recorder

    async def check(self, limit: Limit, client: str, endpoint: str) -> None:
        self.recorder.events.append("limit")
        await super().check(limit, client, endpoint)


def server_receive(recorder: Recorder, *messages: dict[str, Any]) -> Any:
    """A receive like Granian's: the call itself starts the read (logged) and returns a future."""
    queue = list(messages)

    def receive() -> asyncio.Future[dict[str, Any]]:
        recorder.events.append("receive")
        future = asyncio.get_running_loop().create_future()
        future.set_result(queue.pop(0))
        return future

    return receive


@pytest.fixture
async def limiter_parts(redis_url: str) -> AsyncIterator[tuple[Any, Pipelined]]:
    redis = redis_client(redis_url)
    pipelined = Pipelined(redis_url)
    yield redis, pipelined
    await pipelined.close()
    await redis.aclose()


def edge(recorder: Recorder, parts: tuple[Any, Pipelined], requests: int = 100) -> tuple[EdgeApp, list[Any]]:
    settings = load({"JWT_SECRET": TEST_SECRET, "RATE_LIMIT_REQUESTS": str(requests)})
    got: list[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        recorder.events.append("app")
        while True:
            message = await receive()
            got.append(message)
            if not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 201, "headers": []})
        await send({"type": "http.response.body", "body": b"{}", "more_body": False})

    return EdgeApp(app, settings, ObservedLimiter(recorder, *parts), _Children()), got


def request(path: str, body: bytes | None, method: str = "POST") -> dict[str, Any]:
    headers = [(b"x-forwarded-for", b"ignored")]
    if body is not None:
        headers.append((b"content-length", str(len(body)).encode()))
    return {"type": "http", "method": method, "path": path, "path_template": path, "headers": headers,
            "client": (f"10.{uuid.uuid4().int % 250}.0.1", 1), "scheme": "http", "http_version": "1.1"}


async def sent(app: EdgeApp, scope: dict[str, Any], receive: Any) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        out.append(message)

    await app(scope, receive, send)
    return out


async def test_the_body_read_starts_before_the_rate_limit_and_reaches_the_app_once(
    limiter_parts: tuple[Any, Pipelined],
) -> None:
    recorder = Recorder()
    app, got = edge(recorder, limiter_parts)
    messages = ({"type": "http.request", "body": b'{"a"', "more_body": True},
                {"type": "http.request", "body": b":1}", "more_body": False})
    out = await sent(app, request("/api/things", b'{"a":1}'), server_receive(recorder, *messages))
    assert out[0]["status"] == 201
    assert recorder.events == ["receive", "limit", "app", "receive"]
    assert got == list(messages)


@pytest.mark.parametrize(("path", "body", "method"), [("/api/things", None, "GET"), ("/api/autosave", b"{}", "POST")],
                         ids=["no-body", "own-limit"])
async def test_requests_without_a_body_or_with_their_own_limit_read_as_before(
    limiter_parts: tuple[Any, Pipelined], path: str, body: bytes | None, method: str,
) -> None:
    recorder = Recorder()
    app, got = edge(recorder, limiter_parts)
    message = {"type": "http.request", "body": body or b"", "more_body": False}
    await sent(app, request(path, body, method), server_receive(recorder, message))
    assert "receive" not in recorder.events[: recorder.events.index("app")]
    assert got == [message]


async def test_a_refused_request_answers_429_and_leaves_no_unawaited_read(
    limiter_parts: tuple[Any, Pipelined],
) -> None:
    """Over the limit, the app never runs; a coroutine-style receive (uvicorn's) is closed, so no
    'never awaited' warning is left behind."""
    recorder = Recorder()
    app, _ = edge(recorder, limiter_parts, requests=1)
    scope = request("/api/things", b"{}")
    opened: list[Any] = []

    async def coroutine_read() -> dict[str, Any]:
        return {"type": "http.request", "body": b"{}", "more_body": False}

    def receive() -> Any:
        opened.append(coroutine_read())
        return opened[-1]

    first = await sent(app, scope, receive)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        second = await sent(app, scope, receive)
        gc.collect()
    assert [first[0]["status"], second[0]["status"]] == [201, 429]
    assert recorder.events.count("app") == 1
    assert opened[1].cr_frame is None  # closed, never run
    assert not [w for w in caught if "never awaited" in str(w.message)]


async def test_the_prefetch_hands_over_a_coroutine_receive_unchanged() -> None:
    calls: list[int] = []

    async def receive() -> dict[str, Any]:
        calls.append(len(calls))
        return {"type": "http.request", "body": str(len(calls)).encode(), "more_body": True}

    prefetch = _Prefetch(receive)
    assert calls == []  # a coroutine does not run before it is awaited
    assert [(await prefetch())["body"], (await prefetch())["body"]] == [b"1", b"2"]
