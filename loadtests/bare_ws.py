"""The smallest ASGI WebSocket app: accept, answer every frame with ``caught_up``, hold the socket.

``bench_realtime.py`` serves it on Granian with the same settings as ``draftwire api`` to measure
what an idle socket costs the server itself, before any of our code: the floor under the
gateway's own figure.
"""

from __future__ import annotations

from typing import Any

CAUGHT_UP = '{"op":"caught_up","channel":"bare","seq":0,"replayed":0,"durationMs":0}'


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})
        return
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    while (await receive())["type"] != "websocket.disconnect":
        await send({"type": "websocket.send", "text": CAUGHT_UP})
