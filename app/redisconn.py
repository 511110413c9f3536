"""The ways this project talks to Redis: redis-py's pooled client for everything, and
:class:`Pipelined` for the few commands every request makes."""

from __future__ import annotations

import asyncio
import collections
import hashlib
from typing import Any

import hiredis
from opentelemetry import trace
from redis.asyncio import Redis
from redis.driver_info import DriverInfo
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
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

    For the commands each request makes (the autosave and rate-limit scripts): a pooled redis-py
    call costs 90-160 us of CPU (pool lock, connection checks, instrumentation hooks), one here
    10-70 us (docs/decisions/0005-lean-http-edge.md, last addendum). Errors are
    redis-py's own (``ConnectionError``, ``TimeoutError``, ``ResponseError``), so callers handle
    both alike. A lost connection fails the commands in flight and is opened again by the next
    call; a command that times out leaves its reply to be read and dropped.
    """

    def __init__(self, url: str, *, timeout: float = COMMAND_TIMEOUT_S) -> None:
        self.url = url
        self.timeout = timeout
        self._conn: RespConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self._waiting: collections.deque[asyncio.Future[Any]] = collections.deque()
        self._opening = asyncio.Lock()

    async def run(self, script: Script, keys: list[str], args: list[Any]) -> Any:
        """The script's reply (its text is sent once when the server does not have it)."""
        try:
            return await self.call("EVALSHA", script.sha, len(keys), *keys, *args, span=script.name)
        except ResponseError as exc:
            if not str(exc).startswith("NOSCRIPT"):
                raise
        return await self.call("EVAL", script.text, len(keys), *keys, *args, span=script.name)

    async def call(self, *parts: Any, span: str | None = None) -> Any:
        """Send one command and return its reply; an error reply is raised as ``ResponseError``."""
        if not tracing.enabled():
            return await self._call(parts)
        name = str(parts[0])
        attributes = {"db.system": "redis", "db.statement": name, **({"draftwire.redis.script": span} if span else {})}
        with _tracer.start_as_current_span(name, kind=trace.SpanKind.CLIENT, attributes=attributes):
            return await self._call(parts)

    async def _call(self, parts: tuple[Any, ...]) -> Any:
        conn = self._conn if self._conn is not None else await self._open()
        future = asyncio.get_running_loop().create_future()
        try:
            conn.write(command(*parts))
        except ConnectionError as exc:
            self._lost(exc)
            raise RedisConnectionError(f"redis connection lost: {exc}") from None
        self._waiting.append(future)
        try:
            async with asyncio.timeout(self.timeout):
                reply = await future
        except TimeoutError:
            raise RedisTimeoutError(f"redis did not answer within {self.timeout:g} s") from None
        if isinstance(reply, hiredis.ReplyError):
            raise ResponseError(str(reply))
        return reply

    async def _open(self) -> RespConnection:
        async with self._opening:
            if self._conn is None:
                try:
                    self._conn = await RespConnection.open(self.url, select_db=True)
                except (OSError, TimeoutError) as exc:
                    raise RedisConnectionError(f"cannot connect to redis: {type(exc).__name__}: {exc}") from None
                self._reader = asyncio.create_task(self._read(self._conn), name="redis-pipelined-reader")
            return self._conn

    async def _read(self, conn: RespConnection) -> None:
        try:
            while True:
                for reply in await conn.read():
                    future = self._waiting.popleft()
                    if not future.done():  # its caller may have timed out
                        future.set_result(reply)
        except Exception as exc:
            if self._conn is conn:
                self._lost(exc)

    def _lost(self, exc: BaseException) -> None:
        """Fail every command in flight and let the next call connect again."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()
        waiting, self._waiting = self._waiting, collections.deque()
        for future in waiting:
            if not future.done():
                future.set_exception(RedisConnectionError(f"redis connection lost: {type(exc).__name__}"))

    async def close(self) -> None:
        reader, self._reader = self._reader, None
        self._lost(ConnectionError("closed"))
        if reader is not None:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
