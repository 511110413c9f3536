"""A SIGTERMed uvicorn is not held by a peer that stopped reading: at shutdown, a connection that
is closing while its peer takes none of its last bytes is reset after a bound, while a connection
still open, one whose peer takes its last bytes, and one whose peer reads slowly but steadily
are left alone (``app.roles.servers.drop_stalled``). Real sockets on the event loop the gateway
runs (uvloop)."""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any

import pytest
import uvloop

from app.roles.servers import drop_stalled

BIG = 32 * 1024 * 1024
"""More than loopback's kernel buffers take, so the rest waits in the transport."""
WITHIN = 0.5


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
    peers = [socket.create_connection(("127.0.0.1", port), timeout=20) for _ in range(4)]
    try:
        stalled, open_, finishing, slow = [await asyncio.wait_for(made.get(), 10) for _ in peers]
        watcher = asyncio.create_task(drop_stalled(connections, WITHIN))
        for conn, size in ((stalled, BIG), (finishing, 1024), (slow, BIG)):
            conn.transport.write(b"x" * size)
            conn.transport.close()
        assert stalled.transport.get_write_buffer_size() > 0, "the stalled peer must leave bytes unsent"
        # the slow peer takes 1 MiB every 0.1 s: 3 s in all, six times the bound, never stopping
        readers = [asyncio.create_task(asyncio.to_thread(_read_to_end, peers[2])),
                   asyncio.create_task(asyncio.to_thread(_read_to_end, peers[3], 0.1))]

        await asyncio.wait_for(stalled.lost.wait(), 10)
        assert await readers[0] == 1024  # the reading peer got its bytes and an orderly end
        assert await readers[1] == BIG  # and so did the slow one, although it took > WITHIN
        assert connections == {open_} and not open_.transport.is_closing()
        assert not watcher.done(), "it watches until every connection is gone"
        with pytest.raises(ConnectionResetError):  # a reset, not an orderly end after the bytes
            _read_to_end(peers[0])
        peers[1].close()  # the open connection goes too: the watch ends
        assert await asyncio.wait_for(watcher, 10) == 1
    finally:
        for peer in peers:
            peer.close()
        server.close()


def _read_to_end(peer: socket.socket, pause: float = 0.0) -> int:
    got = 0
    while chunk := peer.recv(1 << 20):
        got += len(chunk)
        if pause:
            time.sleep(pause)  # the peer's own reading pace, not a wait for an event
    return got
