"""``catchup``: subscribers replay a channel of stored events (120 by default) from ``sinceSeq`` 0
and verify every seq, once each, in order, up to ``caught_up``.

Sample ``WS catch-up`` = subscribe sent -> ``caught_up`` received; a round whose seqs are not
exactly 1..N fails with what was wrong. Parameters: ``events`` (120), ``users`` (5), ``rounds``
per user (20), ``timeout_s`` (10).
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from locust import User, events, task
from locust.env import Environment
from locust.exception import StopUser
from locust.runners import WorkerRunner

from loadtests.scenarios.common import RUN_ID, admin_post, entry_count, finish_when, fire, param, token
from loadtests.wsclient import RealtimeSocket

EVENTS = int(param("events", 120))
ROUNDS = int(param("rounds", 20))
USERS = int(param("users", 5))
TIMEOUT_S = float(param("timeout_s", 10))
CHANNEL = f"job:loadtest-catchup-{RUN_ID}"
SAMPLE = f"catch-up {EVENTS} events"
FINISHED = "catch-up user finished"


@events.test_start.add_listener
def _store_events(environment: Environment, **_: Any) -> None:
    """The master (or single process) stores the channel's events before any user starts."""
    if isinstance(environment.runner, WorkerRunner):
        return
    admin = token(f"loadtest-setup-{uuid.uuid4().hex[:8]}", admin=True)
    for i in range(1, EVENTS + 1):
        admin_post(environment.host or "", f"/api/admin/channels/{CHANNEL}/events",
                   {"type": "loadtest.stored", "data": {"i": i}}, admin)


finish_when(lambda env: entry_count(env, "CHECK", FINISHED) >= USERS)


def verify(seqs: list[int], caught_up: dict[str, Any], expected: int) -> str | None:
    """What is wrong with one replay, or None."""
    if seqs != list(range(1, expected + 1)):
        missing = sorted(set(range(1, expected + 1)) - set(seqs))
        return f"replayed {len(seqs)} events, {len(missing)} missing, order ok: {seqs == sorted(seqs)}"
    if caught_up.get("seq") != expected:
        return f"caught_up at seq {caught_up.get('seq')}, expected {expected}"
    return None


class CatchUpUser(User):
    """Replays the stored channel ``rounds`` times on one socket."""

    def on_start(self) -> None:
        self.socket = RealtimeSocket(self.host, token(f"loadtest-catchup-{uuid.uuid4().hex[:10]}", admin=True))
        self.rounds = 0

    def on_stop(self) -> None:
        self.socket.close()

    def wait_time(self) -> float:
        return 0.05

    def _round(self) -> None:
        started = time.perf_counter()
        self.socket.subscribe(CHANNEL, 0)
        seqs: list[int] = []
        try:
            for _, frame in self.socket.frames(TIMEOUT_S):
                op = frame.get("op")
                if op == "event" and frame.get("channel") == CHANNEL:
                    seqs.append(frame["seq"])
                elif op == "caught_up" and frame.get("channel") == CHANNEL:
                    elapsed = (time.perf_counter() - started) * 1000
                    fire(self.environment, "WS", SAMPLE, elapsed, verify(seqs, frame, EVENTS))
                    break
                elif op == "error":
                    raise RuntimeError(f"{frame.get('code')}: {frame.get('detail')}")
        except (TimeoutError, ConnectionError, RuntimeError) as exc:
            fire(self.environment, "WS", SAMPLE, (time.perf_counter() - started) * 1000, str(exc))
        self.socket.unsubscribe(CHANNEL)

    @task
    def replay(self) -> None:
        if self.rounds >= ROUNDS:
            fire(self.environment, "CHECK", FINISHED, 0)
            raise StopUser
        self.rounds += 1
        self._round()
