"""``autosave``: people typing (seed 000's client: a save 800 ms after the last keystroke, never more
than 30 a minute), each following their draft's ``draft:<id>`` channel over WebSocket; plus a few
abusive clients saving as fast as they can, who must get 429.

Samples: ``POST /api/autosave`` (typists; a 429 here is a failure: they stay inside the limit),
``WS save-to-persisted`` (202 -> the ``draft.saved`` event of that version or newer),
``POST /api/autosave (abusive)`` (202 and 429 both expected) and ``CHECK autosave 429 (abusive)``
once per 429 they got. Parameters: ``typists`` (5), ``abusers`` (1), ``duration_s`` (10),
``burst_s`` ([0.5, 3.0]: typing before the pause), ``abuse_interval_s`` (0.1), ``persist_grace_s``
(5: how long a typist waits at the end for its last saves to be persisted).
"""

from __future__ import annotations

import random
import time
import uuid
from typing import Any

import gevent
from gevent.event import Event
from locust import task
from locust.contrib.fasthttp import FastHttpUser
from locust.exception import StopUser

from loadtests.scenarios.common import SAVE_INTERVAL_S, entry_count, finish_when, fire, param, token
from loadtests.wsclient import RealtimeSocket

TYPISTS = int(param("typists", 5))
ABUSERS = int(param("abusers", 1))
DURATION_S = float(param("duration_s", 10))
BURST_S = tuple(param("burst_s", [0.5, 3.0]))
DEBOUNCE_S = 0.8
ABUSE_INTERVAL_S = float(param("abuse_interval_s", 0.1))
PERSIST_GRACE_S = float(param("persist_grace_s", 5))
SAVE = "/api/autosave"
ABUSIVE = "/api/autosave (abusive)"
PERSISTED = "save-to-persisted"
FINISHED = "autosave user finished"
LIMITED = "autosave 429 (abusive)"

finish_when(lambda env: entry_count(env, "CHECK", FINISHED) >= TYPISTS + ABUSERS)


def body(user: str, edits: int, draft_id: str | None) -> dict[str, Any]:
    text = " ".join(random.choice(("draft", "spec", "note", "idea", "plan")) for _ in range(random.randint(10, 300)))
    out: dict[str, Any] = {"title": f"Notes of {user}", "payload": {"intro": text, "edits": edits}}
    if draft_id:
        out["draftId"] = draft_id
    return out


class Typist(FastHttpUser):
    weight = TYPISTS
    fixed_count = TYPISTS

    def on_start(self) -> None:
        self.user_id = f"loadtest-typist-{uuid.uuid4().hex[:10]}"
        self.auth = {"Authorization": f"Bearer {token(self.user_id)}"}
        self.draft_id: str | None = None
        self.socket: RealtimeSocket | None = None
        self.reader: gevent.Greenlet | None = None
        self.pending: dict[int, float] = {}
        self.drained = Event()
        self.edits = 0
        self.started = time.monotonic()

    def on_stop(self) -> None:
        if self.reader is not None:
            self.reader.kill(block=False)
        if self.socket is not None:
            self.socket.close()

    def wait_time(self) -> float:
        return max(SAVE_INTERVAL_S, random.uniform(*BURST_S) + DEBOUNCE_S)

    def _follow(self) -> None:
        """The other tab: ``draft.saved {version}`` settles every pending save up to it."""
        assert self.socket is not None
        try:
            for now, frame in self.socket.frames(3600):
                if frame.get("op") != "event" or frame.get("type") != "draft.saved":
                    continue
                version = int(frame["data"]["version"])
                for pending in [v for v in self.pending if v <= version]:
                    fire(self.environment, "WS", PERSISTED, (now - self.pending.pop(pending)) * 1000)
                if not self.pending:
                    self.drained.set()
        except (TimeoutError, ConnectionError, OSError):
            return

    def _save(self) -> None:
        self.edits += 1
        sent = time.time()
        with self.client.post(SAVE, name=SAVE, headers=self.auth, json=body(self.user_id, self.edits, self.draft_id),
                              catch_response=True) as response:
            if response.status_code != 202:
                response.failure(f"{response.status_code}: {(response.text or '')[:120]}")
                return
            reply = response.json()
        self.pending[int(reply["version"])] = sent
        self.drained.clear()
        if self.draft_id is None:
            self.draft_id = reply["draftId"]
            self.socket = RealtimeSocket(self.host, self.auth["Authorization"].split()[1])
            self.socket.subscribe(f"draft:{self.draft_id}", 0)
            self.reader = gevent.spawn(self._follow)

    def _finish(self) -> None:
        self.drained.wait(PERSIST_GRACE_S)
        for version in list(self.pending):
            self.pending.pop(version)
            fire(self.environment, "WS", PERSISTED, PERSIST_GRACE_S * 1000,
                 f"no draft.saved for version {version} within {PERSIST_GRACE_S} s of the run's end")
        fire(self.environment, "CHECK", FINISHED, 0)
        raise StopUser

    @task
    def type_and_pause(self) -> None:
        if time.monotonic() - self.started >= DURATION_S:
            self._finish()
        self._save()


class Abuser(FastHttpUser):
    """A script hammering one draft: the 30/min limit must answer 429 (with Retry-After)."""

    weight = ABUSERS
    fixed_count = ABUSERS

    def on_start(self) -> None:
        self.user_id = f"loadtest-abuser-{uuid.uuid4().hex[:10]}"
        self.auth = {"Authorization": f"Bearer {token(self.user_id)}"}
        self.draft_id: str | None = None
        self.started = time.monotonic()

    def wait_time(self) -> float:
        return ABUSE_INTERVAL_S

    @task
    def hammer(self) -> None:
        if time.monotonic() - self.started >= DURATION_S:
            fire(self.environment, "CHECK", FINISHED, 0)
            raise StopUser
        with self.client.post(SAVE, name=ABUSIVE, headers=self.auth, json=body(self.user_id, 0, self.draft_id),
                              catch_response=True) as response:
            if response.status_code == 202:
                self.draft_id = self.draft_id or response.json()["draftId"]
                response.success()
            elif response.status_code == 429 and response.headers.get("Retry-After"):
                response.success()
                fire(self.environment, "CHECK", LIMITED, 0)
            else:
                response.failure(f"{response.status_code}: {(response.text or '')[:120]}")
