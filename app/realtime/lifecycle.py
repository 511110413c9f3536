"""The realtime gateway's life in a process: the Redis subscriber starts after the platform
opens, and on shutdown the gateway drains (refuses new streams, closes open ones with 1001)
before the platform closes its pools.

Why SIGTERM is intercepted: the servers close sockets themselves before the ASGI lifespan
shutdown runs. Granian's worker stops its server at once, dropping every WebSocket without a
close frame (clients see 1006); uvicorn closes them with 1012. The contract says 1001. So the
gateway takes SIGTERM itself, drains (1001), and then hands the process to the server's own
graceful path: the SIGTERM handler uvicorn installed is called as if the signal had
just arrived; Granian (whose SIGTERM path stops at once) gets SIGINT, its graceful shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from litestar import Litestar
from litestar.enums import ScopeType
from litestar.types import Receive, Scope, Send

from app.realtime.gateway import Gateway
from app.realtime.ws import serve_ws
from observability.logging import get_logger

log = get_logger("app.realtime")


def lifespan(gateway: Gateway) -> Callable[[Litestar], AbstractAsyncContextManager[None]]:
    """The gateway's lifespan: start its Redis subscriber, drain on SIGTERM and at exit."""

    @asynccontextmanager
    async def realtime_lifespan(app: Litestar) -> AsyncIterator[None]:
        gateway.start()
        async with _drain_on_sigterm(gateway):
            yield

    return realtime_lifespan


@asynccontextmanager
async def _drain_on_sigterm(gateway: Gateway) -> AsyncIterator[None]:
    loop = asyncio.get_running_loop()
    tasks: set[asyncio.Task[None]] = set()
    previous = signal.getsignal(signal.SIGTERM)

    async def drain_then_stop() -> None:
        log.info("realtime_draining", connections=len(gateway.sessions))
        await gateway.drain()
        if callable(previous) and getattr(previous, "__module__", "").startswith("uvicorn"):
            # uvicorn: its own handler, as if SIGTERM had just arrived
            loop.remove_signal_handler(signal.SIGTERM)
            signal.signal(signal.SIGTERM, previous)
            previous(signal.SIGTERM, None)
        else:
            os.kill(os.getpid(), signal.SIGINT)  # Granian's graceful shutdown, then lifespan exit

    def on_sigterm() -> None:
        if not gateway.draining:
            task = loop.create_task(drain_then_stop())
            tasks.add(task)
            task.add_done_callback(tasks.discard)

    with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):  # not the main thread
        loop.add_signal_handler(signal.SIGTERM, on_sigterm)
    try:
        yield
    finally:
        await gateway.stop()


def socket_fast_path(gateway: Gateway) -> Callable[[Litestar], None]:
    """Puts :func:`_install_socket_fast_path` on an app once it is built."""
    return lambda app: _install_socket_fast_path(app, gateway)


def _install_socket_fast_path(app: Litestar, gateway: Gateway) -> None:
    """Serve ``/ws`` in front of Litestar's middleware stack, with the server's own ``send``.

    Why: every layer of that stack (the exception handlers at app and route level) wraps ``send``
    in an ``async def``, so each frame would become a coroutine, and with the one-send-in-flight
    outbox a task, per socket write. Granian's own ``send`` starts the write at once and returns
    a future; at 40,000 frames/s that difference is most of the API's CPU. The ``/ws`` route in
    routes.py stays as the fallback (same handler) for servers or test clients without this.
    """
    inner = app.asgi_handler

    async def realtime_front(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == ScopeType.WEBSOCKET and scope["path"] == "/ws":
            try:
                await serve_ws(gateway, scope, receive, send)
            except Exception as exc:
                log.error("realtime_socket_failed", error=type(exc).__name__, exc_info=exc)
            return
        await inner(scope, receive, send)

    app.asgi_handler = realtime_front

