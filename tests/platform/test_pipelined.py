"""``app.redisconn.Pipelined``: the one connection the per-request Redis calls share, against a
real redis-server: replies reach their own callers under concurrency, errors are redis-py's,
a script the server forgot is sent again, and a restarted server is reconnected to."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from app.redisconn import Pipelined, Script
from devstack.servers import RedisServer

pytestmark = pytest.mark.live

ECHO = Script("test.echo", "return {KEYS[1], ARGV[1], tonumber(ARGV[2]) * 2}")
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
    blocked = asyncio.create_task(pipelined.call("BLPOP", "never", 0))  # in flight when Redis goes
    await asyncio.sleep(0)  # let it be written
    server.stop()
    with pytest.raises(RedisConnectionError):
        async with asyncio.timeout(WAIT_S):
            await blocked
    with pytest.raises(RedisConnectionError):
        await pipelined.call("PING")  # nothing listens: refused, not hung
    server.start()
    async with asyncio.timeout(WAIT_S):
        assert await pipelined.call("PING") == b"PONG"
