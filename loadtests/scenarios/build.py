"""``build``: save a draft of ``sections`` top-level keys, ``POST /api/drafts/{id}/build``, follow
``job:<jobId>`` from seq 0 and check ``build.started {sections}``, every
``build.section.completed {index,total,title}`` in order, then ``build.completed``.

Samples: ``POST /api/autosave``, ``POST /api/drafts/{draft_id}/build``, and ``WS build ->
build.completed`` (build POST sent -> ``build.completed`` arrived; failed when a section is
missing, repeated or out of order, or the build failed). Parameters: ``users`` (2), ``rounds``
per user (3), ``sections`` (8), ``timeout_s`` (30).
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from locust import task
from locust.contrib.fasthttp import FastHttpUser
from locust.exception import StopUser

from loadtests.scenarios.common import SAVE_INTERVAL_S, entry_count, finish_when, fire, param, token
from loadtests.wsclient import RealtimeSocket

USERS = int(param("users", 2))
ROUNDS = int(param("rounds", 3))
SECTIONS = int(param("sections", 8))
TIMEOUT_S = float(param("timeout_s", 30))
SAMPLE = "build -> build.completed"
FINISHED = "build user finished"

finish_when(lambda env: entry_count(env, "CHECK", FINISHED) >= USERS)


def check_build(frames: list[dict[str, Any]], titles: list[str]) -> str | None:
    """What is wrong with one build's events (type and data, in arrival order), or None."""
    kinds = [f["type"] for f in frames]
    if not kinds or kinds[0] != "build.started" or frames[0]["data"].get("sections") != len(titles):
        return f"expected build.started with {len(titles)} sections first, got {kinds[:1]}"
    sections = [f["data"] for f in frames if f["type"] == "build.section.completed"]
    expected = [{"index": i, "total": len(titles), "title": t} for i, t in enumerate(titles, start=1)]
    if sections != expected:
        got = [s.get("index") for s in sections]
        return f"sections arrived as {got}, expected 1..{len(titles)} in order"
    if kinds[-1] != "build.completed":
        return f"ended with {kinds[-1]}: {frames[-1]['data']}"
    return None


class Builder(FastHttpUser):
    def on_start(self) -> None:
        self.user_id = f"loadtest-builder-{uuid.uuid4().hex[:10]}"
        self.token = token(self.user_id)
        self.auth = {"Authorization": f"Bearer {self.token}"}
        self.socket = RealtimeSocket(self.host, self.token)
        self.rounds = 0

    def on_stop(self) -> None:
        self.socket.close()

    def wait_time(self) -> float:
        return SAVE_INTERVAL_S  # one save a round, inside the autosave limit

    def _follow(self, channel: str, sent: float, titles: list[str]) -> None:
        frames: list[dict[str, Any]] = []
        self.socket.subscribe(channel, 0)
        try:
            for now, frame in self.socket.frames(TIMEOUT_S):
                if frame.get("op") == "error":
                    raise RuntimeError(f"{frame.get('code')}: {frame.get('detail')}")
                if frame.get("op") != "event" or frame.get("channel") != channel:
                    continue
                frames.append(frame)
                if frame["type"] in ("build.completed", "build.failed"):
                    fire(self.environment, "WS", SAMPLE, (now - sent) * 1000, check_build(frames, titles))
                    break
        except (TimeoutError, ConnectionError, RuntimeError) as exc:
            fire(self.environment, "WS", SAMPLE, (time.time() - sent) * 1000, f"{exc} after {len(frames)} events")
        self.socket.unsubscribe(channel)

    @task
    def build(self) -> None:
        if self.rounds >= ROUNDS:
            fire(self.environment, "CHECK", FINISHED, 0)
            raise StopUser
        self.rounds += 1
        titles = [f"Section {i} of round {self.rounds}" for i in range(1, SECTIONS + 1)]
        payload = {title: f"Text of {title.lower()}." for title in titles}
        with self.client.post("/api/autosave", name="/api/autosave", headers=self.auth, catch_response=True,
                              json={"title": f"Spec {self.rounds}", "payload": payload}) as saved:
            if saved.status_code != 202:
                saved.failure(f"{saved.status_code}: {(saved.text or '')[:120]}")
                return
            draft_id = saved.json()["draftId"]
        sent = time.time()
        with self.client.post(f"/api/drafts/{draft_id}/build", name="/api/drafts/{draft_id}/build",
                              headers=self.auth, catch_response=True) as started:
            if started.status_code != 202:
                started.failure(f"{started.status_code}: {(started.text or '')[:120]}")
                return
            job_id = started.json()["jobId"]
        self._follow(f"job:{job_id}", sent, titles)

