"""The ASGI servers our HTTP roles run under: Granian (the API, and the gateway when asked) and
uvicorn (the gateway's default). One process, one event loop, one worker each: prometheus-client's
multiprocess mode drops exemplars, so we scale with processes and replicas.

Why two (docs/decisions/0004-gateway-server.md): Granian serves requests with the least CPU, but
gives every WebSocket tungstenite's default 128 KiB read buffer (no setting changes it), about
150 KiB a socket; uvicorn with ``websockets-sansio`` holds an idle socket in about 20 KiB.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator
from typing import Any

from app.config import Settings
from app.realtime.direct import reset
from observability.logging import get_logger

WS_MAX_MESSAGE_BYTES = 64 * 1024
"""Largest client frame the server library reassembles before closing with 1009 itself; the
gateway's own limit (16 KiB, also 1009) sits under it."""
KILL_TIMEOUT_S = 30
STALLED_CLOSE_S = 2.0
"""At uvicorn's shutdown, how long a closing connection may go without its peer taking any of its
last bytes; after that the peer has stopped reading or vanished, and the socket is reset."""


def granian(target: str, settings: Settings) -> None:
    """Serve the app factory ``target`` (``module:function``) with Granian until stopped."""
    from granian import Granian
    from granian.constants import Interfaces, Loops, RuntimeModes

    # Single-threaded runtime keeps socket frames in order.
    Granian(
        target,
        factory=True,
        address=settings.host,
        port=settings.port,
        interface=Interfaces.ASGI,
        workers=1,
        loop=Loops.uvloop,
        runtime_mode=RuntimeModes.st,
        log_enabled=False,
        backlog=2048,
        workers_kill_timeout=KILL_TIMEOUT_S,
    ).serve()


def uvicorn(target: str, settings: Settings, *, ws: str = "websockets-sansio") -> None:
    """Serve the app factory ``target`` with uvicorn (uvloop, httptools, ``ws``) until stopped.

    ``REALTIME_COMPRESSION`` turns on per-message deflate. Keep-alive pings every 20 s (uvicorn's
    default) find dead peers well before ``REALTIME_IDLE_TIMEOUT``."""
    import uvicorn as uv

    config = uv.Config(
        target,
        factory=True,
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http="httptools",
        ws=ws,
        ws_max_size=WS_MAX_MESSAGE_BYTES,
        ws_per_message_deflate=settings.realtime_compression,
        lifespan="on",
        log_config=None,
        access_log=False,
        server_header=False,
        backlog=2048,
        timeout_graceful_shutdown=KILL_TIMEOUT_S,
        proxy_headers=False,
    )
    _server_class()(config).run()


def _server_class() -> Any:
    import uvicorn as uv

    class Server(uv.Server):
        """uvicorn's server, except that a SIGTERM it handled is not raised again after the
        graceful shutdown: the process exits 0, like ``draftwire api`` and ``draftwire worker``
        (uvicorn re-raises it so that embedding programs see it; we are the program)."""

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            with super().capture_signals():
                try:
                    yield
                finally:
                    self._captured_signals.clear()

        async def _wait_tasks_to_complete(self) -> None:
            await drop_stalled(self.server_state.connections, STALLED_CLOSE_S, forced=lambda: self.force_exit)
            await super()._wait_tasks_to_complete()

    return Server


async def drop_stalled(connections: set[Any], within: float, *, every: float = 0.05,
                       forced: Callable[[], bool] = lambda: False) -> int:
    """Until every connection is gone, reset each one that is closing and whose unsent bytes have
    not gone down for ``within`` s; how many were reset. uvicorn's graceful shutdown waits (30 s)
    for every connection to go, and a closing transport goes only once the peer has read what is
    left in it: a client that stopped reading, or vanished without a FIN (a phone that lost its
    network), would hold every rolling restart for the whole 30 s. A peer that is still reading,
    however slowly, keeps its bytes and gets its orderly end; a connection still serving a request
    is not closing, so it keeps uvicorn's own wait (which also bounds this one: it runs inside it).
    ``forced``: a second Ctrl-C (uvicorn's ``force_exit``) ends the wait."""
    loop = asyncio.get_running_loop()
    progress: dict[Any, tuple[int, float]] = {}
    """Per closing connection: the fewest unsent bytes seen, and when that was first seen."""
    dropped: set[Any] = set()
    # uvicorn signals nothing when a connection goes (its own wait polls every 0.1 s)
    while connections and not forced():
        now = loop.time()
        stalled = []
        for conn in list(connections):
            if conn in dropped or not _closing(conn):
                continue
            unsent = conn.transport.get_write_buffer_size()
            least = progress.get(conn)
            if least is None or unsent < least[0]:
                progress[conn] = (unsent, now)
            elif now - least[1] >= within:
                stalled.append(conn)
        for conn in stalled:
            reset(conn.transport)
            dropped.add(conn)
        if stalled:
            get_logger("app.server").warning("shutdown_dropped_stalled_connections", connections=len(stalled),
                                              stalled_s=within)
        await asyncio.sleep(every)
    return len(dropped)


def _closing(conn: Any) -> bool:
    transport = getattr(conn, "transport", None)
    return transport is not None and transport.is_closing()
