"""The edge starts reading a request's body before it waits on the rate limit (``_Prefetch``):
the app still gets every message once and in order, a refused request's read is stopped (and
through Granian its connection closes at once), and requests without a body, with their own
limit, or expecting ``100-continue`` are untouched. Against a real Redis limiter."""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from app.config import load
from app.http.edge import EdgeApp, _Children, _Prefetch
from app.ratelimit import Limit, RateLimiter
from app.redisconn import Pipelined, redis_client
from loadtests.rawhttp import post_json
from tests.support.processes import TEST_SECRET, ServiceProcess

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
    headers: list[tuple[bytes, bytes]] = []
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


@pytest.mark.parametrize(
    ("path", "body", "method", "expect"),
    [("/api/things", None, "GET", False), ("/api/autosave", b"{}", "POST", False), ("/api/things", b"{}", "POST", True)],
    ids=["no-body", "own-limit", "expect-100-continue"],
)
async def test_requests_without_a_body_with_their_own_limit_or_expecting_continue_read_as_before(
    limiter_parts: tuple[Any, Pipelined], path: str, body: bytes | None, method: str, expect: bool,
) -> None:
    recorder = Recorder()
    app, got = edge(recorder, limiter_parts)
    message = {"type": "http.request", "body": body or b"", "more_body": False}
    scope = request(path, body, method)
    if expect:
        scope["headers"].append((b"expect", b"100-continue"))
    await sent(app, scope, server_receive(recorder, message))
    assert "receive" not in recorder.events[: recorder.events.index("app")]
    assert got == [message]


async def test_a_refused_request_answers_429_and_cancels_the_read(limiter_parts: tuple[Any, Pipelined]) -> None:
    """Over the limit the app never runs, and the read started early is stopped: Granian's
    awaitable is cancelled (its runtime then lets go of the body and the connection)."""
    recorder = Recorder()
    app, _ = edge(recorder, limiter_parts, requests=1)
    scope = request("/api/things", b"{}")
    reads: list[asyncio.Future[dict[str, Any]]] = []

    def receive() -> asyncio.Future[dict[str, Any]]:
        reads.append(asyncio.get_running_loop().create_future())  # a client that never sends its body
        if len(reads) == 1:
            reads[0].set_result({"type": "http.request", "body": b"{}", "more_body": False})
        return reads[-1]

    first = await sent(app, scope, receive)
    second = await sent(app, scope, receive)
    assert [first[0]["status"], second[0]["status"]] == [201, 429]
    assert recorder.events.count("app") == 1
    assert reads[1].cancelled()


async def test_a_refused_request_closes_a_coroutine_read(limiter_parts: tuple[Any, Pipelined]) -> None:
    """Under a server whose receive is a coroutine function (uvicorn), the unawaited coroutine is
    closed, never run."""
    recorder = Recorder()
    app, _ = edge(recorder, limiter_parts, requests=1)
    scope = request("/api/things", b"{}")
    opened: list[Any] = []

    async def coroutine_read() -> dict[str, Any]:
        return {"type": "http.request", "body": b"{}", "more_body": False}

    def receive() -> Any:
        opened.append(coroutine_read())
        return opened[-1]

    statuses = [(await sent(app, scope, receive))[0]["status"] for _ in range(2)]
    assert statuses == [201, 429]
    assert opened[1].cr_frame is None  # closed without running


def _read_until_closed(sock: socket.socket, within: float) -> bytes:
    """Everything the server sends until it closes the connection; fail if it is still open after
    ``within`` seconds."""
    sock.settimeout(within)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except TimeoutError:
        raise AssertionError(f"the connection was still open after {within} s; got {data!r}") from None
    return data


def test_through_granian_a_refused_request_without_its_body_is_closed_at_once(
    spawn: Callable[..., ServiceProcess], token: Callable[..., str],
) -> None:
    """A client over its limit that declares a body and never sends it gets its 429 and its
    connection closed, not held open by the read the edge started; and with ``Expect:
    100-continue`` it is not invited to send the body first."""
    limited = spawn("api", RATE_LIMIT_REQUESTS="1", RATE_LIMIT_WINDOW_SECONDS="60")
    admin = token(admin=True)
    channel = f"job:{uuid.uuid4().hex}"
    body = b'{"type":"t.x","data":{"n":1}}'
    path, auth = f"/api/admin/channels/{channel}/events", {"authorization": f"Bearer {admin}"}
    whole = post_json(path, body, auth)
    with socket.create_connection(("127.0.0.1", limited.port), timeout=10) as sock:
        sock.sendall(whole)
        assert sock.recv(65536).startswith(b"HTTP/1.1 201")
    with socket.create_connection(("127.0.0.1", limited.port), timeout=10) as sock:
        sock.sendall(whole[: -len(body)])  # the body never comes
        refused = _read_until_closed(sock, within=5)
    assert refused.startswith(b"HTTP/1.1 429"), refused
    with socket.create_connection(("127.0.0.1", limited.port), timeout=10) as sock:
        sock.sendall(post_json(path, body, {**auth, "expect": "100-continue"})[: -len(body)])
        refused = _read_until_closed(sock, within=5)
    assert refused.startswith(b"HTTP/1.1 429"), refused
    assert b"100 Continue" not in refused


async def test_the_prefetch_hands_over_a_coroutine_receive_unchanged() -> None:
    calls: list[int] = []

    async def receive() -> dict[str, Any]:
        calls.append(len(calls))
        return {"type": "http.request", "body": str(len(calls)).encode(), "more_body": True}

    prefetch = _Prefetch(receive)
    assert calls == []  # a coroutine does not run before it is awaited
    assert [(await prefetch())["body"], (await prefetch())["body"]] == [b"1", b"2"]
