"""A realtime test client over a real socket, and helpers to publish through the admin endpoint.

:class:`Client` reads frames in a background task and checks, for every frame, that each
channel's seqs arrive exactly once and in order (any out-of-order or repeated seq is recorded
in ``violations``), so every test that receives events also proves frame order.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

WAIT_S = 20.0


def channel_name(kind: str = "job") -> str:
    return f"{kind}:{uuid.uuid4().hex}"


def ws_url(base: str, token: str | None = None) -> str:
    url = base.replace("http://", "ws://") + "/ws"
    return f"{url}?token={token}" if token else url


class Client:
    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.frames: list[dict[str, Any]] = []
        self.seqs: dict[str, list[int]] = {}
        self.violations: list[str] = []
        self.close_code: int | None = None
        self.close_reason = ""
        self._changed = asyncio.Condition()
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def open(cls, base: str, token: str | None, **kwargs: Any) -> Client:
        ws = await connect(ws_url(base, token), open_timeout=WAIT_S, max_size=None, **kwargs)
        return cls(ws)

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                frame = json.loads(raw)
                self._record(frame)
                async with self._changed:
                    self.frames.append(frame)
                    self._changed.notify_all()
        except ConnectionClosed:
            pass
        finally:
            if self.ws.close_code is not None:
                self.close_code = self.ws.close_code
                self.close_reason = self.ws.close_reason or ""
            async with self._changed:
                self._changed.notify_all()

    def _record(self, frame: dict[str, Any]) -> None:
        if frame.get("op") == "event":
            items = [(frame["channel"], frame["seq"])]
        elif frame.get("op") == "events":
            items = [(frame["channel"], e["seq"]) for e in frame["events"]]
        else:
            return
        for channel, seq in items:
            got = self.seqs.setdefault(channel, [])
            if got and seq != got[-1] + 1:
                self.violations.append(f"{channel}: {seq} after {got[-1]}")
            got.append(seq)

    async def send(self, frame: dict[str, Any] | str) -> None:
        await self.ws.send(frame if isinstance(frame, str) else json.dumps(frame))

    async def subscribe(self, channel: str, since: int = 0) -> None:
        await self.send({"op": "subscribe", "channel": channel, "sinceSeq": since})

    async def wait_for(self, pred: Callable[[dict[str, Any]], bool], timeout: float = WAIT_S) -> dict[str, Any]:
        """The first frame (seen so far or later) matching ``pred``."""
        async with asyncio.timeout(timeout), self._changed:
            while True:
                for frame in self.frames:
                    if pred(frame):
                        return frame
                if self._reader.done():
                    raise AssertionError(f"socket closed ({self.close_code}) before the frame came")
                await self._changed.wait()

    async def wait_op(self, op: str, channel: str | None = None, timeout: float = WAIT_S) -> dict[str, Any]:
        return await self.wait_for(lambda f: f.get("op") == op and (channel is None or f.get("channel") == channel),
                                   timeout)

    async def wait_seq(self, channel: str, seq: int, timeout: float = WAIT_S) -> None:
        """Until the channel's last received seq is at least ``seq``."""
        async with asyncio.timeout(timeout), self._changed:
            while not (self.seqs.get(channel) and self.seqs[channel][-1] >= seq):
                if self._reader.done():
                    raise AssertionError(f"socket closed ({self.close_code}) at {self.seqs.get(channel, [])[-1:]}")
                await self._changed.wait()

    async def wait_closed(self, timeout: float = WAIT_S) -> int | None:
        async with asyncio.timeout(timeout):
            await asyncio.shield(self._reader)
        return self.close_code

    def last(self, channel: str) -> int:
        return self.seqs.get(channel, [0])[-1] if self.seqs.get(channel) else 0

    async def close(self) -> None:
        await self.ws.close()
        self._reader.cancel()


async def publish(http: httpx.AsyncClient, base: str, admin: str, channel: str, n: int = 1,
                  type_: str = "job.progress") -> list[int]:
    """Publish ``n`` events in order through ``POST /api/admin/channels/{channel}/events``."""
    seqs = []
    for i in range(n):
        r = await http.post(f"{base}/api/admin/channels/{channel}/events",
                            json={"type": type_, "data": {"i": i}}, headers={"authorization": f"Bearer {admin}"})
        assert r.status_code == 201, r.text
        seqs.append(r.json()["seq"])
    return seqs


def assert_exactly(client: Client, channel: str, first: int, last: int) -> None:
    assert client.violations == []
    assert client.seqs.get(channel, []) == list(range(first, last + 1))
