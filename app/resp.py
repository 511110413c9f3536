"""Redis connections of our own: RESP2 over asyncio streams, parsed by hiredis.

Two users, each for a reason redis-py cannot serve:

- the gateway's pub/sub (:mod:`app.realtime.resp`): redis-py's ``PubSub`` reconnects and
  resubscribes silently, so the gateway would never learn that announcements were lost;
- the API's hot commands (:class:`app.redisconn.Pipelined`): one connection carrying every
  request's command at once costs a quarter to a half of redis-py's pooled call in CPU.

URLs: ``redis://[[user]:password@]host[:port][/db]``, ``rediss://...`` (TLS; the server's
certificate is verified against the system trust store, or the CA file ``SSL_CERT_FILE`` names,
and must match the host), ``unix://[[user]:password@]/path/to/socket[?db=N]``. A refused AUTH,
or a server that wants a password it was not given, is a :class:`Refused` (a
``ConnectionError``) saying so (tests/realtime/test_resp.py).
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any, Self
from urllib.parse import parse_qs, unquote, urlparse

import hiredis

CONNECT_TIMEOUT_S = 2.0


class Refused(ConnectionError):
    """Redis answered but refused us (wrong or missing credentials): the message says what to fix."""


def command(*parts: Any) -> bytes:
    """One command in RESP."""
    packed: bytes = hiredis.pack_command(parts)
    return packed


class RespConnection:
    """One connection: write commands, read replies in the order they come."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._parser = hiredis.Reader()

    @classmethod
    async def open(cls, url: str, *, select_db: bool = False) -> Self:
        """Connect (AUTH when the URL has credentials, SELECT its database when ``select_db``);
        raises OSError/TimeoutError/ConnectionError."""
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
                db = _database(parsed.path if parsed.scheme != "unix" else "", parsed.query)
                if select_db and db:
                    conn.write(command("SELECT", db))
                    if isinstance(reply := await conn.read_one(), Exception):
                        raise ConnectionError(f"redis refused SELECT {db} ({reply}): check the database in REDIS_URL")
            except BaseException:
                conn.close()
                raise
        return conn

    async def _handshake(self, username: str | None, password: str | None) -> None:
        """AUTH when the URL has credentials, else PING: a server that wants a password it was
        not given answers the first command with an error reply, which would otherwise pass."""
        if password:
            auth = [unquote(username), unquote(password)] if username else [unquote(password)]
            self.write(command("AUTH", *auth))
            reply = await self.read_one()
            if isinstance(reply, Exception):
                raise Refused(f"redis AUTH refused ({reply}): check the user and password in REDIS_URL")
            return
        self.write(command("PING"))
        reply = await self.read_one()
        if isinstance(reply, Exception):
            hint = ": REDIS_URL needs the password" if str(reply).startswith("NOAUTH") else ""
            raise Refused(f"redis refused the connection ({reply}){hint}")

    def write(self, data: bytes) -> None:
        if self._writer.is_closing():
            raise ConnectionError("redis connection closed")
        self._writer.write(data)

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

    def abort(self) -> None:
        """Close at once, dropping anything not yet sent."""
        self._writer.transport.abort()


def _database(path: str, query: str) -> int:
    """The database number of a URL, as redis-py reads it: ``?db=2`` first, then ``/2``; 0 when none."""
    text = (parse_qs(query).get("db") or [""])[0] or path.strip("/")
    return int(text) if text.isdigit() else 0
