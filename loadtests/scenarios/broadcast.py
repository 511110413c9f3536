"""``broadcast``: ``subscribers`` sockets on one channel; one publisher posts ``events`` events at
``rate``/s through ``POST /api/admin/channels/{channel}/events``, each carrying its send time in
``data.t``, then one ``loadtest.end`` marker.

Samples: ``WS broadcast delivery`` = publish send -> arrival, one per event per subscriber;
``POST /api/admin/channels/{channel}/events`` (the publisher's own requests); ``CHECK broadcast
subscriber`` once per subscriber, failed when it saw a drop, a duplicate or a gap. Exact counts of
deliveries, drops (never arrived), duplicates (arrived twice) and gaps (arrived after a skip) go to
the master as a message and into the result file. Parameters: ``subscribers`` (10), ``events``
(100), ``rate`` (50), ``publishers`` (20 concurrent requests), ``end_timeout_s`` (15).
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import gevent
from gevent.pool import Pool
from locust import User, task
from locust.contrib.fasthttp import FastHttpUser
from locust.exception import StopUser

from loadtests.scenarios.common import (
    FAULT,
    RUN_ID,
    admin_get,
    entry_count,
    finish_when,
    fire,
    param,
    send_counts,
    token,
)
from loadtests.wsclient import RealtimeSocket

SUBSCRIBERS = int(param("subscribers", 10))
EVENTS = int(param("events", 100))
RATE = float(param("rate", 50))
CONCURRENCY = int(param("publishers", 20))
END_TIMEOUT_S = float(param("end_timeout_s", 15))
READY_TIMEOUT_S = float(param("ready_timeout_s", 60))
CHANNEL = f"job:loadtest-broadcast-{RUN_ID}"
DELIVERY = "broadcast delivery"
SUBSCRIBER = "broadcast subscriber"
PUBLISHED = "broadcast published"
PUBLISH_NAME = "/api/admin/channels/{channel}/events"

_faults = {"drop_one": FAULT == "drop_one", "dup_one": FAULT == "dup_one"}
"""Test-only client-side faults, spent by the first subscriber of this process that can use them."""

finish_when(lambda env: entry_count(env, "CHECK", SUBSCRIBER) >= SUBSCRIBERS
            and entry_count(env, "CHECK", PUBLISHED) >= 1)


class Tally:
    """One subscriber's view of the sequence 1..expected."""

    def __init__(self) -> None:
        self.seen: set[int] = set()
        self.last = 0
        self.duplicates = 0
        self.gaps = 0

    def add(self, seq: int) -> bool:
        """Count one arrival; False when it is a duplicate."""
        if seq in self.seen:
            self.duplicates += 1
            return False
        if seq != self.last + 1:
            self.gaps += 1
        self.seen.add(seq)
        self.last = max(self.last, seq)
        return True

    def drops(self, expected: int) -> int:
        return len(set(range(1, expected + 1)) - self.seen)


class Subscriber(User):
    fixed_count = SUBSCRIBERS

    def on_start(self) -> None:
        self.socket = RealtimeSocket(self.host, token(f"loadtest-sub-{uuid.uuid4().hex[:10]}", admin=True))
        # Events may arrive before caught_up (the catch-up/live overlap): listen() reads them all.
        self.socket.subscribe(CHANNEL, 0)

    def on_stop(self) -> None:
        self.socket.close()

    @staticmethod
    def _faulty(event: dict[str, Any]) -> list[dict[str, Any]]:
        """This process's one test fault, spent on the first seq 2 it sees: dropped or repeated."""
        for name, copies in (("drop_one", 0), ("dup_one", 2)):
            if _faults[name] and event["seq"] == 2:
                _faults[name] = False
                return [event] * copies
        return [event]

    @task
    def listen(self) -> None:
        env, tally, ended = self.environment, Tally(), False
        error: str | None = None
        try:
            for now, frame in self.socket.frames(END_TIMEOUT_S):
                if frame.get("op") == "error":
                    raise ConnectionError(f"{frame.get('code')}: {frame.get('detail')}")
                if frame.get("op") != "event" or frame.get("channel") != CHANNEL:
                    continue
                if frame["type"] == "loadtest.end":
                    ended = True
                    break
                for event in self._faulty(frame) if FAULT else [frame]:
                    if tally.add(event["seq"]):
                        fire(env, "WS", DELIVERY, (now - event["data"]["t"]) * 1000)
        except (TimeoutError, ConnectionError) as exc:
            error = f"stream ended before the end marker: {exc}"
        drops = tally.drops(EVENTS)
        send_counts(env, {"subscribers": 1, "delivered": len(tally.seen), "drops": drops,
                          "duplicates": tally.duplicates, "gaps": tally.gaps, "unfinished": int(not ended)})
        if drops or tally.duplicates or tally.gaps:
            error = f"{drops} dropped, {tally.duplicates} duplicated, {tally.gaps} gaps" + (f"; {error}" if error else "")
        fire(env, "CHECK", SUBSCRIBER, 0, error)
        raise StopUser


class Publisher(FastHttpUser):
    """Waits for every subscriber to be on the channel, then publishes on a fixed schedule."""

    fixed_count = 1
    concurrency = CONCURRENCY

    def on_start(self) -> None:
        self.admin = token(f"loadtest-pub-{uuid.uuid4().hex[:8]}", admin=True)
        self.headers = {"Authorization": f"Bearer {self.admin}"}

    def _subscribed(self) -> int:
        snapshot = admin_get(self.host, "/api/realtime/metrics", self.admin)
        return int(snapshot.get("subscriptionsByJob", {}).get(CHANNEL, 0))

    def _publish(self, i: int) -> None:
        self.client.post(f"/api/admin/channels/{CHANNEL}/events", name=PUBLISH_NAME, headers=self.headers,
                         json={"type": "loadtest.tick", "data": {"t": time.time(), "i": i}})

    @task
    def publish(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while self._subscribed() < SUBSCRIBERS:
            if time.monotonic() > deadline:
                fire(self.environment, "CHECK", PUBLISHED, 0, f"fewer than {SUBSCRIBERS} subscribers after {READY_TIMEOUT_S} s")
                break
            gevent.sleep(0.1)
        pool, start = Pool(CONCURRENCY), time.monotonic()
        for i in range(EVENTS):
            delay = start + i / RATE - time.monotonic()
            if delay > 0:
                gevent.sleep(delay)
            pool.spawn(self._publish, i)
        pool.join()
        # The marker travels behind every event (seqs are ordered), so a subscriber that sees it has
        # seen all it ever will.
        self.client.post(f"/api/admin/channels/{CHANNEL}/events", name=PUBLISH_NAME, headers=self.headers,
                         json={"type": "loadtest.end", "data": {"t": time.time()}})
        seconds = time.monotonic() - start
        fire(self.environment, "CHECK", PUBLISHED, seconds * 1000)
        send_counts(self.environment, {"published": EVENTS, "publish_ms": round(seconds * 1000)})
        raise StopUser
