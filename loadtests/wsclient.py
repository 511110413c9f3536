"""The scenarios' WebSocket client: ``websocket-client`` on gevent's patched sockets (what Locust
runs on), speaking the contract's realtime frames. A batched ``events`` frame is unpacked into one
``event`` per element, in order, as the contract tells clients to treat it."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import websocket


class RealtimeSocket:
    """One authenticated ``/ws`` connection."""

    def __init__(self, host: str, token: str, *, timeout: float = 10) -> None:
        url = host.rstrip("/").replace("http://", "ws://", 1).replace("https://", "wss://", 1)
        self.ws = websocket.create_connection(
            f"{url}/ws?token={token}", timeout=timeout, skip_utf8_validation=True, enable_multithread=False
        )

    def send(self, frame: dict[str, Any]) -> None:
        self.ws.send(json.dumps(frame))

    def subscribe(self, channel: str, since_seq: int = 0) -> None:
        self.send({"op": "subscribe", "channel": channel, "sinceSeq": since_seq})

    def unsubscribe(self, channel: str) -> None:
        self.send({"op": "unsubscribe", "channel": channel})

    def frames(self, timeout: float) -> Iterator[tuple[float, dict[str, Any]]]:
        """Every server frame with its arrival time (``time.time()``), ``events`` unpacked;
        raises ``TimeoutError`` when nothing arrives for ``timeout`` seconds."""
        self.ws.settimeout(timeout)
        while True:
            try:
                raw = self.ws.recv()
            except websocket.WebSocketTimeoutException:
                raise TimeoutError(f"no frame within {timeout} s") from None
            now = time.time()
            if not raw:
                raise ConnectionError("the server closed the socket")
            frame = json.loads(raw)
            if frame.get("op") == "events":
                channel = frame.get("channel")
                for element in frame["events"]:
                    yield now, {"op": "event", "channel": channel, **element}
            else:
                yield now, frame

    def until(self, op: str, timeout: float) -> dict[str, Any]:
        """Skip frames up to the first ``op`` frame (an ``error`` frame raises)."""
        for _, frame in self.frames(timeout):
            if frame.get("op") == op:
                return frame
            if frame.get("op") == "error":
                raise RuntimeError(f"{frame.get('code')}: {frame.get('detail')}")
        raise AssertionError("unreachable")

    def close(self) -> None:
        self.ws.close()
