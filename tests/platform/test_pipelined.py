"""``app.redisconn.Pipelined``: the one connection the per-request Redis calls share, against a
real redis-server: replies reach their own callers under concurrency, errors are redis-py's,
a script the server forgot is sent again, and a restarted server is reconnected to."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import hiredis
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from app.redisconn import Pipelined, Script
from app.resp import CONNECT_TIMEOUT_S
from devstack.servers import RedisServer

pytestmark = pytest.mark.live

ECHO = Script("test.echo", "return {KEYS[1], ARGV[1], tonumber(ARGV[2]) * 2}")
SPIN = Script("test.spin", """
local t = redis.call('TIME')
local until_us = t[1] * 1000000 + t[2] + tonumber(ARGV[1]) * 1000
repeat t = redis.call('TIME') until t[1] * 1000000 + t[2] >= until_us
return 'OK'
""")
"""Keeps Redis busy for ARGV[1] ms (DEBUG SLEEP is disabled on these servers)."""
WAIT_S = 10.0


@pytest.fixture
def server(workdir: Path) -> Iterator[RedisServer]:
    path = workdir / f"p-{uuid.uuid4().hex[:6]}"
    path.mkdir()
    redis = RedisServer(path).start()
    try:
        yield redis
    finally:
        redis.stop()


@pytest.fixture
async def pipelined(server: RedisServer) -> AsyncIterator[Pipelined]:
    client = Pipelined(server.url.rsplit("/", 1)[0] + "/3")  # a database other than 0
    try:
        yield client
    finally:
        await client.close()


async def test_concurrent_calls_each_get_their_own_reply(pipelined: Pipelined, server: RedisServer) -> None:
    async with asyncio.timeout(WAIT_S):
        replies = await asyncio.gather(*(pipelined.run(ECHO, [f"k{i}"], [f"v{i}", i]) for i in range(500)))
    assert replies == [[f"k{i}".encode(), f"v{i}".encode(), 2 * i] for i in range(500)]
    # The URL's database was selected: a key set through this connection is in database 3 only.
    await pipelined.call("SET", "where", "here")
    db3, db0 = Redis.from_url(server.url.rsplit("/", 1)[0] + "/3"), Redis.from_url(server.url)
    try:
        assert await db3.get("where") == b"here"
        assert await db0.get("where") is None
    finally:
        await db3.aclose()
        await db0.aclose()


async def test_error_replies_are_redis_py_errors_and_the_connection_stays_usable(pipelined: Pipelined) -> None:
    await pipelined.call("SET", "text", "not a number")
    with pytest.raises(ResponseError, match="not an integer"):
        await pipelined.call("INCR", "text")
    assert await pipelined.call("INCR", "counter") == 1


async def test_a_script_the_server_forgot_is_sent_again(pipelined: Pipelined) -> None:
    assert await pipelined.run(ECHO, ["a"], ["b", 1]) == [b"a", b"b", 2]
    await pipelined.call("SCRIPT", "FLUSH")
    assert await pipelined.run(ECHO, ["a"], ["b", 2]) == [b"a", b"b", 4]


async def test_a_restarted_server_fails_calls_in_flight_then_is_reconnected(
    pipelined: Pipelined, server: RedisServer
) -> None:
    assert await pipelined.call("PING") == b"PONG"
    # In flight when Redis goes (a blocking command only here: in use it would hold every caller).
    blocked = asyncio.create_task(pipelined.call("BLPOP", "never", 0))
    await asyncio.sleep(0)  # let it be written
    server.stop()
    with pytest.raises(RedisConnectionError):
        async with asyncio.timeout(WAIT_S):
            await blocked
    with pytest.raises(RedisConnectionError):
        await pipelined.call("PING")  # nothing listens: refused, not hung
    server.start()
    # Callers fail at once for RETRY_AFTER_S after a failed connect; then one connects again.
    deadline = time.monotonic() + WAIT_S
    while True:
        try:
            assert await pipelined.call("PING") == b"PONG"
            break
        except RedisConnectionError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(Pipelined.RETRY_AFTER_S / 5)


async def test_a_reply_that_comes_too_late_drops_the_connection(server: RedisServer) -> None:
    """A call past its deadline fails with redis-py's TimeoutError, and the replies queued behind
    the late one are not handed to the wrong callers: the next call gets a connection of its own."""
    client = Pipelined(server.url, timeout=2.0)
    try:
        with pytest.raises(RedisTimeoutError):
            await client.run(SPIN, [], [3000])
        async with asyncio.timeout(WAIT_S):
            assert await client.call("PING") == b"PONG"  # not the late "OK" of the spin
    finally:
        await client.close()


async def test_a_caller_that_gives_up_does_not_shift_the_replies(pipelined: Pipelined) -> None:
    assert await pipelined.call("PING") == b"PONG"  # connected: the next command goes out at once
    slow = asyncio.create_task(pipelined.call("EVAL", SPIN.text, 0, 200))
    await asyncio.sleep(0)  # let it be written
    assert pipelined._link is not None and len(pipelined._link.waiting) == 1
    slow.cancel()
    async with asyncio.timeout(WAIT_S):
        assert await pipelined.call("ECHO", "mine") == b"mine"


async def test_something_that_is_not_redis_is_a_connection_error(workdir: Path) -> None:
    """Garbage where Redis should be is a ConnectionError (a 503 to the API), not a 500."""

    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"\x00\xffnot redis at all\r\n")
        await writer.drain()
        writer.close()

    listener = await asyncio.start_server(garbage, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    client = Pipelined(f"redis://127.0.0.1:{port}/0")
    try:
        async with asyncio.timeout(WAIT_S):
            with pytest.raises(RedisConnectionError):
                await client.call("PING")
    finally:
        await client.close()
        listener.close()


async def test_callers_share_one_connect_attempt(workdir: Path) -> None:
    """While Redis does not answer the connect, every waiting caller fails with the one attempt
    (about CONNECT_TIMEOUT_S), not one attempt after another."""
    accepted: list[asyncio.StreamWriter] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)  # never answers the handshake's PING

    listener = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    client = Pipelined(f"redis://127.0.0.1:{port}/0")
    try:
        started = time.monotonic()
        async with asyncio.timeout(WAIT_S):
            results = await asyncio.gather(*(client.call("PING") for _ in range(20)), return_exceptions=True)
        assert all(isinstance(r, RedisConnectionError) for r in results), results
        assert len(accepted) == 1
        assert time.monotonic() - started < 2 * CONNECT_TIMEOUT_S
    finally:
        await client.close()
        for writer in accepted:
            writer.close()
        listener.close()


async def test_a_connection_that_goes_silent_is_replaced(workdir: Path) -> None:
    """A connection whose replies stop (a black-holed network, a failed-over address) is dropped at
    the first missed deadline: the next call gets a new connection instead of waiting behind it."""
    connections: list[asyncio.StreamWriter] = []

    async def server(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(writer)
        silent_after_handshake = len(connections) == 1
        parser = hiredis.Reader()
        answered = 0
        while data := await reader.read(65536):
            parser.feed(data)
            while parser.gets() is not False:
                if silent_after_handshake and answered >= 1:
                    continue  # the first connection answers its handshake, then nothing
                writer.write(b"+PONG\r\n")
                answered += 1

    listener = await asyncio.start_server(server, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    client = Pipelined(f"redis://127.0.0.1:{port}/0", timeout=0.5)
    try:
        with pytest.raises(RedisTimeoutError):
            await client.call("PING")
        async with asyncio.timeout(WAIT_S):
            assert await client.call("PING") == b"PONG"
        assert len(connections) == 2
    finally:
        await client.close()
        for writer in connections:
            writer.close()
        listener.close()


async def test_a_call_is_a_span_in_a_recorded_trace_only(pipelined: Pipelined, spans: InMemorySpanExporter) -> None:
    """Inside a sampled request a call is a CLIENT span naming the command and script, never their
    arguments; outside one (a trace not sampled) no span is made at all."""
    tracer = trace.get_tracer("test")
    with tracer.start_as_current_span("sampled request"):
        await pipelined.run(ECHO, ["secret-key"], ["secret-payload", 1])
    with trace.use_span(trace.NonRecordingSpan(trace.INVALID_SPAN_CONTEXT)):
        await pipelined.call("ECHO", "unsampled")
    redis_spans = [s for s in spans.get_finished_spans() if s.attributes and s.attributes.get("db.system") == "redis"]
    assert [s.name for s in redis_spans] in (["EVALSHA"], ["EVALSHA", "EVAL"])  # EVAL once if not loaded
    assert all(s.attributes and s.attributes.get("draftwire.redis.script") == "test.echo" for s in redis_spans)
    assert "secret" not in repr([dict(s.attributes or {}) for s in redis_spans])
