"""``make demo``: gentle, realistic traffic against a running ``make up`` stack, so every
dashboard panel and the alert pages have something to show.

    python -m loadtests.demo [--api http://127.0.0.1:8080] [--minutes 5] [--users 4]

A few users edit drafts, each saving every 1-3 s (well inside the 30 saves/min limit), now and
then reading a draft back, listing drafts or starting a build; two WebSocket subscribers follow
their drafts' and builds' channels. About once a minute one user types too fast and hits the
rate limit, and a couple of bad requests (malformed JSON, an empty title, a forged token) show
up as 4xx and a refused socket. Progress is printed every 10 s; Ctrl-C stops early.

Tokens are signed with the same ``JWT_SECRET`` the stack reads (``make up``'s dev default unless
you exported one). :class:`Traffic` is also what the live monitoring tests send
(tests/monitoring/test_live_stack.py), so the demo and the tests exercise the same requests.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from app.auth import issue

SAVES_PER_MINUTE_LIMIT = 30
"""AUTOSAVE_RATE_LIMIT_PER_MINUTE's default; a burst above it gets 429."""
PROGRESS_EVERY_S = 10.0


@dataclass
class Traffic:
    """Requests a real client makes, counted by what came back (``counts["save 202"]``...)."""

    base: str
    """API base URL, e.g. ``http://127.0.0.1:8080``."""
    secret: str
    """JWT_SECRET of the stack, to sign session tokens."""
    http: httpx.AsyncClient = field(default_factory=lambda: httpx.AsyncClient(timeout=10))
    counts: Counter[str] = field(default_factory=Counter)

    def token(self, user: str) -> str:
        return issue(self.secret, user, ttl_seconds=3600)

    def headers(self, user: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(user)}"}

    async def _call(
        self, what: str, method: str, path: str, user: str | None, **kwargs: Any
    ) -> httpx.Response:
        headers = {**(self.headers(user) if user else {}), **kwargs.pop("headers", {})}
        response = await self.http.request(method, self.base + path, headers=headers, **kwargs)
        self.counts[f"{what} {response.status_code}"] += 1
        return response

    async def save(self, user: str, draft_id: str | None = None, words: int = 40) -> str | None:
        """One autosave of a growing draft; its id on 202."""
        body: dict[str, Any] = {
            "title": f"Notes {user}",
            "payload": {"intro": "lorem " * words, "details": {"words": words}, "outro": "fin"},
        }
        if draft_id:
            body["draftId"] = draft_id
        response = await self._call("save", "POST", "/api/autosave", user, json=body)
        return str(response.json()["draftId"]) if response.status_code == 202 else None

    async def read(self, user: str, draft_id: str) -> None:
        await self._call("read", "GET", f"/api/drafts/{draft_id}", user)

    async def list_drafts(self, user: str) -> None:
        await self._call("list", "GET", "/api/drafts?limit=10", user)

    async def build(self, user: str, draft_id: str) -> str | None:
        """Start a build of the draft; its job id on 202."""
        response = await self._call("build", "POST", f"/api/drafts/{draft_id}/build", user)
        return str(response.json()["jobId"]) if response.status_code == 202 else None

    async def hit_rate_limit(self, user: str, extra: int = 3, spacing_s: float = 0.0) -> None:
        """Save one draft faster than the per-user limit until refused, then ``extra`` more
        refusals ``spacing_s`` apart (spread over scrapes, they show as a rate, not one step)."""
        draft_id, refused = None, 0
        for _ in range(SAVES_PER_MINUTE_LIMIT + 1 + extra):
            body = {"title": "typing fast", "payload": {}, **({"draftId": draft_id} if draft_id else {})}
            response = await self._call("save", "POST", "/api/autosave", user, json=body)
            draft_id = draft_id or response.json().get("draftId")
            if response.status_code == 429:
                refused += 1
                if refused > extra:
                    return
                await asyncio.sleep(spacing_s)

    async def bad_requests(self, user: str) -> None:
        """Malformed JSON (400), an empty title (422), someone else's or no draft (404)."""
        await self._call("bad", "POST", "/api/autosave", user, content=b"{not json",
                         headers={"Content-Type": "application/json"})
        await self._call("bad", "POST", "/api/autosave", user, json={"title": "", "payload": {}})
        await self._call("bad", "GET", f"/api/drafts/{uuid.uuid4()}", user)

    async def refused_socket(self) -> None:
        """A WebSocket with a forged token: accepted, then closed with 1008."""
        url = f"{self._ws_base()}/ws?token=forged"
        with contextlib.suppress(ConnectionClosed, InvalidHandshake, OSError, TimeoutError):
            async with connect(url, open_timeout=5, close_timeout=2) as ws:
                await asyncio.wait_for(ws.recv(), 5)
        self.counts["socket refused"] += 1

    async def follow(self, user: str, channels: list[str], stop: asyncio.Event | None = None) -> None:
        """A subscriber: subscribe to ``channels`` from seq 0 (catch-up, then live), ping now and
        then, count events, until ``stop`` is set or the server closes the socket; without
        ``stop``, only until every channel has caught up (a tab opened and closed)."""
        url = f"{self._ws_base()}/ws?token={self.token(user)}"
        try:
            async with connect(url, open_timeout=5, close_timeout=2, max_size=None) as ws:
                self.counts["socket open"] += 1
                for channel in channels:
                    await ws.send(json.dumps({"op": "subscribe", "channel": channel, "sinceSeq": 0}))
                caught_up, give_up = 0, time.monotonic() + 10

                def done() -> bool:
                    if stop is not None:
                        return stop.is_set()
                    return caught_up >= len(channels) or time.monotonic() > give_up

                while not done():
                    try:
                        frame = json.loads(await asyncio.wait_for(ws.recv(), 1.0))
                    except TimeoutError:
                        await ws.send('{"op": "ping"}')
                        continue
                    op = frame.get("op")
                    caught_up += op in ("caught_up", "error")  # an error answers a subscribe too
                    self.counts[f"ws {op}"] += len(frame["events"]) if op == "events" else 1
        except (ConnectionClosed, InvalidHandshake, OSError, TimeoutError) as exc:
            self.counts[f"socket closed {type(exc).__name__}"] += 1

    def _ws_base(self) -> str:
        return self.base.replace("http://", "ws://", 1).replace("https://", "wss://", 1)

    async def aclose(self) -> None:
        await self.http.aclose()


async def _writer(traffic: Traffic, user: str, drafts: dict[str, list[str]], rng: random.Random,
                  stop: asyncio.Event) -> None:
    """One person writing: saves every 1-3 s, sometimes a new draft, a read-back, a build."""
    first = await traffic.save(user)
    if first:
        drafts[user].append(first)
    while not stop.is_set():
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), rng.uniform(1, 3))
        if stop.is_set():
            return
        try:
            if rng.random() < 0.05 or not drafts[user]:
                new = await traffic.save(user)
                if new:
                    drafts[user].append(new)
                continue
            draft = rng.choice(drafts[user])
            await traffic.save(user, draft, words=rng.randint(10, 400))
            roll = rng.random()
            if roll < 0.1:
                await traffic.read(user, draft)
            elif roll < 0.15:
                await traffic.list_drafts(user)
            elif roll < 0.22:
                await traffic.build(user, draft)
        except httpx.HTTPError as exc:
            traffic.counts[f"error {type(exc).__name__}"] += 1


async def _mischief(traffic: Traffic, drafts: dict[str, list[str]], stop: asyncio.Event) -> None:
    """Now and then: a user over the rate limit (about once a minute) and a few bad requests."""
    rounds = 0
    while not stop.is_set():
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), 20 if rounds == 0 else 60)
        if stop.is_set():
            return
        try:
            if rounds < 2:
                await traffic.bad_requests("demo-mallory")
                await traffic.refused_socket()
            await traffic.hit_rate_limit("demo-speedy")
        except httpx.HTTPError as exc:
            traffic.counts[f"error {type(exc).__name__}"] += 1
        rounds += 1


async def _subscriber(traffic: Traffic, user: str, drafts: dict[str, list[str]], stop: asyncio.Event) -> None:
    """Follow the user's drafts (reconnecting every 30 s, as a tab does, so catch-up runs too)."""
    while not stop.is_set():
        channels = [f"draft:{d}" for d in drafts[user][:5]]
        if not channels:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), 1)
            continue
        session_over = asyncio.Event()
        follower = asyncio.create_task(traffic.follow(user, channels, session_over))
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), 30)
        session_over.set()
        await follower


def _progress(traffic: Traffic, started: float) -> str:
    parts = ", ".join(f"{k}: {v}" for k, v in sorted(traffic.counts.items()))
    return f"[{time.monotonic() - started:5.0f} s] {parts}"


async def run(base: str, secret: str, seconds: float, users: int, seed: int | None = None) -> Counter[str]:
    """Send demo traffic for ``seconds`` (or until cancelled); the response counts."""
    rng = random.Random(seed)
    traffic = Traffic(base, secret)
    stop = asyncio.Event()
    names = [f"demo-user-{i}" for i in range(users)]
    drafts: dict[str, list[str]] = {name: [] for name in names}
    tasks = [
        asyncio.create_task(_writer(traffic, n, drafts, random.Random(rng.random()), stop))
        for n in names
    ]
    tasks += [asyncio.create_task(_subscriber(traffic, n, drafts, stop)) for n in names[:2]]
    tasks.append(asyncio.create_task(_mischief(traffic, drafts, stop)))
    started = time.monotonic()
    try:
        while time.monotonic() - started < seconds:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(asyncio.gather(*tasks)), PROGRESS_EVERY_S)
            print(_progress(traffic, started), flush=True)
    finally:
        stop.set()
        await asyncio.wait(tasks, timeout=10)
        for task in tasks:
            task.cancel()
        await traffic.aclose()
    return traffic.counts


def main(argv: list[str] | None = None) -> int:
    from app.config import load

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    settings = load()
    parser.add_argument("--api", default=f"http://127.0.0.1:{settings.port}", help="API base URL")
    parser.add_argument("--minutes", type=float, default=5.0, help="how long to run (default 5)")
    parser.add_argument("--users", type=int, default=4, help="people writing drafts (default 4)")
    parser.add_argument("--seed", type=int, default=None, help="random seed, for a repeatable run")
    args = parser.parse_args(argv)
    try:
        alive = httpx.get(f"{args.api}/healthz", timeout=2)
    except httpx.HTTPError:
        print(f"!! nothing answers at {args.api}: start the stack with `make up` first", file=sys.stderr)
        return 1
    print(f"==> demo traffic to {args.api} for {args.minutes:g} min ({args.users} users; healthz "
          f"{alive.status_code}); Ctrl-C stops", flush=True)
    try:
        counts = asyncio.run(run(args.api, settings.jwt_secret, args.minutes * 60, args.users, args.seed))
    except KeyboardInterrupt:
        print("\n==> stopped", flush=True)
        return 0
    print(f"==> done: {sum(counts.values())} requests and frames", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
