"""Wires the realtime gateway (WebSocket, SSE, admin publish, metrics) into the app, and its
lifespan: the Redis subscriber starts after the runtime, and on shutdown the gateway drains
(refuses new streams, closes open ones with 1001) before the runtime closes its pools.

Why SIGTERM is intercepted: Granian's worker reacts to SIGTERM by stopping its server at once,
which drops every WebSocket without a close frame (clients see 1006) *before* the ASGI lifespan
shutdown runs. So the gateway takes SIGTERM itself, drains, and then hands the process to
Granian's own graceful path by raising SIGINT, which Granian still handles (same shutdown).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from litestar import Litestar
from litestar.config.app import AppConfig
from litestar.plugins import InitPlugin
from litestar.types import Receive, Scope, Send

from observability.logging import get_logger

if TYPE_CHECKING:
    from app.realtime.gateway import Gateway

log = get_logger("app.realtime")


@asynccontextmanager
async def realtime_lifespan(app: Litestar) -> AsyncIterator[None]:
    from app.realtime.gateway import Gateway

    gateway = Gateway(app.state.runtime)
    app.state.realtime = gateway
    gateway.start()
    _install_socket_fast_path(app, gateway)
    loop = asyncio.get_running_loop()
    tasks: set[asyncio.Task[None]] = set()

    async def drain_then_stop() -> None:
        log.info("realtime_draining", connections=len(gateway.sessions))
        await gateway.drain()
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


def _install_socket_fast_path(app: Litestar, gateway: Gateway) -> None:
    """Serve ``/ws`` in front of Litestar's middleware stack, with the server's own ``send``.

    Why: every layer of that stack (the exception handlers at app and route level) wraps ``send``
    in an ``async def``, so each frame would become a coroutine, and with the one-send-in-flight
    outbox a task, per socket write. Granian's own ``send`` starts the write at once and returns
    a future; at 40,000 frames/s that difference is most of the API's CPU. The ``/ws`` route in
    routes.py stays as the fallback (same handler) for servers or test clients without this.
    """
    from app.realtime.ws import serve_ws

    inner = app.asgi_handler

    async def realtime_front(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket" and scope["path"] == "/ws":
            try:
                await serve_ws(gateway, scope, receive, send)
            except Exception as exc:
                log.error("realtime_socket_failed", error=type(exc).__name__, exc_info=exc)
            return
        await inner(scope, receive, send)

    app.asgi_handler = realtime_front


class RealtimePlugin(InitPlugin):
    """Adds the realtime routes and the gateway's lifespan."""

    def on_app_init(self, app_config: AppConfig) -> AppConfig:
        from app.realtime.routes import ROUTES

        app_config.route_handlers.extend(ROUTES)
        app_config.lifespan.append(realtime_lifespan)
        return app_config
