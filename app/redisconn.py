"""The ways this project talks to Redis: redis-py's pooled client for everything, and
:class:`Pipelined` for the few commands every request makes."""

from __future__ import annotations

import asyncio
import collections
import hashlib
import time
from typing import Any

import hiredis
from opentelemetry import trace
from redis._parsers.base import BaseParser
from redis.asyncio import Redis
from redis.driver_info import DriverInfo
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import DataError, NoScriptError
from redis.exceptions import TimeoutError as RedisTimeoutError

from app.resp import RespConnection, command
from observability import tracing

_DRIVER_INFO = DriverInfo()
"""What ``CLIENT SETINFO`` reports, resolved once: left to redis-py, every new connection looks
its own version up in the installed packages' metadata (about 1 % of the API's CPU while a
burst grows the pool)."""
COMMAND_TIMEOUT_S = 5.0
"""As redis-py's ``socket_timeout`` below: a hung Redis fails requests (503), not piles them up."""
_tracer = trace.get_tracer("draftwire.redis")


def redis_client(url: str) -> Redis:
    """Short timeouts: a hung Redis must fail requests fast (503), not pile them up."""
    return Redis.from_url(
        url,
        socket_timeout=COMMAND_TIMEOUT_S,
        socket_connect_timeout=2,
        health_check_interval=15,
        retry_on_timeout=False,
        driver_info=_DRIVER_INFO,
    )


class Script:
    """A Lua script run through :meth:`Pipelined.run` (EVALSHA, EVAL once the server lacks it)."""

    __slots__ = ("name", "sha", "text")

    def __init__(self, name: str, text: str) -> None:
        self.name = name
        self.text = text
        self.sha = hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()


class Pipelined:
    """One Redis connection that carries every caller's command at once; replies come back in
    the order the commands went out (RESP guarantees it), each to its caller's future.

    For the commands each request makes (the autosave and rate-limit scripts, an announcement): a
    pooled redis-py call costs 90-160 us of CPU (pool lock, connection checks, instrumentation
    hooks), one here 17-85 us (``loadtests/bench_redis_call.py``; decision 0005, last addendum).
    Never for blocking or subscribing commands: every caller waits behind the oldest reply.

    Errors are redis-py's own types (``ConnectionError``, ``TimeoutError``, ``ResponseError`` and
    its kin, ``DataError``), so callers handle both clients alike. Every call is bounded by
    ``timeout``, its connect included. A connection that loses a reply's deadline, fails, or
    closes is dropped (aborted, its commands in flight failed); all callers then share one new
    connect attempt, and for ``RETRY_AFTER_S`` after a failed one they fail at once, so a Redis
    outage answers requests fast instead of queueing them behind 2 s connects.
    """

    RETRY_AFTER_S = 0.5
    MAX_WAITING = 4096
    """Commands in flight on the connection at most; more is overload, refused at once."""

    def __init__(self, url: str, *, timeout: float = COMMAND_TIMEOUT_S) -> None:
        self.url = url
        self.timeout = timeout
        self._link: _Link | None = None
        self._connecting: asyncio.Task[_Link] | None = None
        self._failed_at = -1e9
        self._closed = False

    async def run(self, script: Script, keys: list[str], args: list[Any]) -> Any:
        """The script's reply (its text is sent once when the server does not have it)."""
        try:
            return await self.call("EVALSHA", script.sha, len(keys), *keys, *args, span=script.name)
        except NoScriptError:
            return await self.call("EVAL", script.text, len(keys), *keys, *args, span=script.name)

    async def call(self, *parts: Any, span: str | None = None) -> Any:
        """Send one command and return its reply; an error reply is raised as redis-py raises it.
        A CLIENT span inside a recorded trace; none where the trace is not sampled (the request's
        span does not record), which a child span could only inherit at 30-50 us a call."""
        if not tracing.enabled() or not trace.get_current_span().is_recording():
            return await self._call(parts)
        name = str(parts[0])
        attributes = {"db.system": "redis", "db.statement": name, **({"draftwire.redis.script": span} if span else {})}
        with _tracer.start_as_current_span(name, kind=trace.SpanKind.CLIENT, attributes=attributes):
            return await self._call(parts)

    async def _call(self, parts: tuple[Any, ...]) -> Any:
        try:
            packed = command(*parts)
        except TypeError as exc:
            raise DataError(f"a redis argument of an unsupported type: {exc}") from None
        link: _Link | None = None
        try:
            async with asyncio.timeout(self.timeout):
                link = self._link if self._link is not None else await self._connect()
                if len(link.waiting) >= self.MAX_WAITING:
                    raise RedisConnectionError(f"{self.MAX_WAITING} redis commands already waiting")
                try:
                    future = link.send(packed)
                except RedisConnectionError as exc:
                    self._drop(link, exc)
                    raise
                reply = await future
        except TimeoutError:
            if link is not None:  # its replies are now behind one that never came: start over
                self._drop(link, TimeoutError("no reply in time"))
            raise RedisTimeoutError(f"redis did not answer within {self.timeout:g} s") from None
        if isinstance(reply, hiredis.ReplyError):
            raise BaseParser.parse_error(str(reply))
        return reply

    async def _connect(self) -> _Link:
        """The current connection, or one attempt shared by every caller that waits for it."""
        if self._closed:
            raise RedisConnectionError("redis client closed")
        if self._connecting is None:
            if time.monotonic() - self._failed_at < self.RETRY_AFTER_S:
                raise RedisConnectionError("redis unreachable (last attempt moments ago)")
            self._connecting = asyncio.create_task(self._open(), name="redis-pipelined-connect")
            # Its failure reaches whoever still waits; if nobody does, it is not "never retrieved".
            self._connecting.add_done_callback(lambda task: task.cancelled() or task.exception())
        return await asyncio.shield(self._connecting)

    async def _open(self) -> _Link:
        try:
            conn = await RespConnection.open(self.url, select_db=True)
        except Exception as exc:  # refused, unreachable, not Redis, a bad URL: all a ConnectionError
            self._failed_at = time.monotonic()
            raise RedisConnectionError(f"cannot connect to redis: {type(exc).__name__}: {exc}") from None
        finally:
            self._connecting = None
        if self._closed:
            conn.abort()
            raise RedisConnectionError("redis client closed")
        link = _Link(conn)
        link.reader = asyncio.create_task(self._read(link), name="redis-pipelined-reader")
        self._link = link
        return link

    async def _read(self, link: _Link) -> None:
        try:
            while True:
                for reply in await link.conn.read():
                    future = link.waiting.popleft()
                    if not future.done():  # its caller may have gone (timeout, cancellation)
                        future.set_result(reply)
        except BaseException as exc:
            self._drop(link, exc)
            if not isinstance(exc, Exception):
                raise  # cancellation, exit

    def _drop(self, link: _Link, exc: BaseException) -> None:
        """Abort ``link`` and fail its commands in flight; the next call connects again."""
        if self._link is link:
            self._link = None
        link.conn.abort()  # nothing buffered for it may reach Redis after its callers were failed
        while link.waiting:
            future = link.waiting.popleft()
            if not future.done():
                future.set_exception(RedisConnectionError(f"redis connection lost: {type(exc).__name__}"))
        if link.reader is not None and link.reader is not asyncio.current_task():
            link.reader.cancel()

    async def close(self) -> None:
        self._closed = True
        link, connecting = self._link, self._connecting
        if connecting is not None:
            connecting.cancel()
        if link is not None:
            self._drop(link, ConnectionError("closed"))
            if link.reader is not None:
                await asyncio.gather(link.reader, return_exceptions=True)


class _Link:
    """One open connection and the callers waiting on it, oldest first."""

    __slots__ = ("conn", "reader", "waiting")

    def __init__(self, conn: RespConnection) -> None:
        self.conn = conn
        self.waiting: collections.deque[asyncio.Future[Any]] = collections.deque()
        self.reader: asyncio.Task[None] | None = None

    def send(self, packed: bytes) -> asyncio.Future[Any]:
        try:
            self.conn.write(packed)
        except ConnectionError as exc:
            raise RedisConnectionError(f"redis connection lost: {exc}") from None
        future = asyncio.get_running_loop().create_future()
        self.waiting.append(future)
        return future
