"""A SIGTERMed uvicorn is not held by a peer that stopped reading: at shutdown, a connection
that is closing but cannot finish (unsent bytes, a peer that takes none) is reset after a bound,
while a connection still open, or one whose peer takes its last bytes, is left alone
(``app.roles.servers.drop_stalled``). Real sockets on the event loop the gateway runs (uvloop)."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest
import uvloop

from app.roles.servers import drop_stalled

BIG = 32 * 1024 * 1024
"""More than loopback's kernel buffers take, so the rest waits in the transport."""


class Conn(asyncio.Protocol):
    """A server-side connection that leaves uvicorn's connection set when it goes, as uvicorn's do."""

    def __init__(self, connections: set[Conn], made: asyncio.Queue[Conn]) -> None:
        self.connections, self.made = connections, made
        self.transport: Any = None
        self.lost = asyncio.Event()

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.connections.add(self)
        self.made.put_nowait(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.connections.discard(self)
        self.lost.set()


def test_only_a_closing_connection_whose_peer_takes_nothing_is_reset() -> None:
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(_scenario())


async def _scenario() -> None:
    loop = asyncio.get_running_loop()
    connections: set[Conn] = set()
    made: asyncio.Queue[Conn] = asyncio.Queue()
    server = await loop.create_server(lambda: Conn(connections, made), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    peers = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(3)]
    try:
        stalled, open_, finishing = [await asyncio.wait_for(made.get(), 10) for _ in peers]
        stalled.transport.write(b"x" * BIG)
        stalled.transport.close()
        assert stalled.transport.get_write_buffer_size() > 0, "the stalled peer must leave bytes unsent"
        finishing.transport.write(b"y" * 1024)
        finishing.transport.close()
        reader = asyncio.create_task(asyncio.to_thread(_read_to_end, peers[2]))

        assert await drop_stalled(connections, within=1.0) == 1
        await asyncio.wait_for(stalled.lost.wait(), 10)
        assert await reader == 1024  # the reading peer got its bytes and an orderly end
        assert connections == {open_} and not open_.transport.is_closing()
        with pytest.raises(ConnectionResetError):  # a reset, not an orderly end after the bytes
            _read_to_end(peers[0])
    finally:
        for peer in peers:
            peer.close()
        server.close()


def _read_to_end(peer: socket.socket) -> int:
    got = 0
    while chunk := peer.recv(1 << 20):
        got += len(chunk)
    return got
