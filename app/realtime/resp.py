"""A minimal Redis pub/sub connection (RESP2 over asyncio streams, parsed by hiredis).

Why not redis-py's ``PubSub``: its retry logic reconnects and resubscribes silently, so the
gateway would never learn that announcements were lost and would skip the Postgres backfill.
Here a lost connection is an exception the supervisor sees (see :mod:`app.realtime.hub`).

URLs: ``redis://[[user]:password@]host[:port]``, ``rediss://...`` (TLS; the server's certificate
is verified against the system trust store, or the CA file ``SSL_CERT_FILE`` names, and must
match the host), ``unix://[[user]:password@]/path/to/socket``. The database number is ignored:
pub/sub spans every database. A refused AUTH, or a server that wants a password it was not
given, is a :class:`Refused` (a ``ConnectionError``) saying so (tests/realtime/test_resp.py).
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any
from urllib.parse import unquote, urlparse

import hiredis

CONNECT_TIMEOUT_S = 2.0


class Refused(ConnectionError):
    """Redis answered but refused us (wrong or missing credentials): the message says what to fix."""


def _command(*parts: str) -> bytes:
    out = [f"*{len(parts)}\r\n".encode()]
    for part in parts:
        raw = part.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(raw), raw))
    return b"".join(out)


class PubSubConnection:
    """One connection in subscriber mode: send SUBSCRIBE/UNSUBSCRIBE/PING, read replies."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._parser = hiredis.Reader()

    @classmethod
    async def open(cls, url: str) -> PubSubConnection:
        """Connect (and AUTH when the URL has credentials); raises OSError/TimeoutError/ConnectionError."""
        parsed = urlparse(url)
        async with asyncio.timeout(CONNECT_TIMEOUT_S):
            if parsed.scheme == "unix":
                reader, writer = await asyncio.open_unix_connection(parsed.path)
            else:
                tls = ssl.create_default_context() if parsed.scheme == "rediss" else None
                reader, writer = await asyncio.open_connection(parsed.hostname or "127.0.0.1", parsed.port or 6379,
                                                               ssl=tls)
            conn = cls(reader, writer)
            try:
                await conn._handshake(parsed.username, parsed.password)
            except BaseException:
                conn.close()
                raise
        return conn

    async def _handshake(self, username: str | None, password: str | None) -> None:
        """AUTH when the URL has credentials, else PING: a server that wants a password it was
        not given answers SUBSCRIBE with an error reply, which would otherwise pass as silence."""
        if password:
            auth = [unquote(username), unquote(password)] if username else [unquote(password)]
            self._write(_command("AUTH", *auth))
            reply = await self.read_one()
            if isinstance(reply, Exception):
                raise Refused(f"redis AUTH refused ({reply}): check the user and password in REDIS_URL")
            return
        self._write(_command("PING"))
        reply = await self.read_one()
        if isinstance(reply, Exception):
            hint = ": REDIS_URL needs the password" if str(reply).startswith("NOAUTH") else ""
            raise Refused(f"redis refused the connection ({reply}){hint}")

    def _write(self, data: bytes) -> None:
        if self._writer.is_closing():
            raise ConnectionError("redis connection closed")
        self._writer.write(data)

    def subscribe(self, *channels: str) -> None:
        if channels:
            self._write(_command("SUBSCRIBE", *channels))

    def unsubscribe(self, *channels: str) -> None:
        if channels:
            self._write(_command("UNSUBSCRIBE", *channels))

    def ping(self) -> None:
        self._write(_command("PING"))

    async def read(self) -> list[Any]:
        """Every reply available after at least one arrives; ConnectionError when the server is gone."""
        while True:
            reply = self._parser.gets()
            if reply is not False:
                replies = [reply]
                while (more := self._parser.gets()) is not False:
                    replies.append(more)
                return replies
            data = await self._reader.read(65536)
            if not data:
                raise ConnectionError("redis closed the connection")
            self._parser.feed(data)

    async def read_one(self) -> Any:
        replies = await self.read()
        if len(replies) != 1:
            raise ConnectionError("unexpected redis reply")
        return replies[0]

    def close(self) -> None:
        self._writer.close()
