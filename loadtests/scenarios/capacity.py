"""``capacity``: a ``LoadTestShape`` that steps the autosave rate up until a step's p95 passes
``p95_limit_ms`` (the contract's 100 ms target) or its error ratio passes ``error_limit`` (1 %),
and reports the last step that held: the number capacity planning needs.

Each saver saves once every ``interval_s`` (2.5 s: inside 30/min), so a step of ``step_users``
more savers adds ``step_users / interval_s`` saves a second. A step is judged on the requests
after its first ``settle_s`` seconds, from the difference of Locust's own response-time histogram
between two moments (on the master, over every worker). The steps, with their start and end
times, are written to the result file so the suite can tell a step the generator could not drive.
Parameters: ``step_users`` (20), ``step_s`` (10), ``max_steps`` (10), ``interval_s`` (2.5),
``settle_s`` (2), ``p95_limit_ms`` (100), ``error_limit`` (0.01).
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from locust import LoadTestShape, constant_pacing, task
from locust.contrib.fasthttp import FastHttpUser
from locust.stats import calculate_response_time_percentile, diff_response_time_dicts

from loadtests.scenarios.common import RESULT, param, token

STEP_USERS = int(param("step_users", 20))
STEP_S = float(param("step_s", 10))
MAX_STEPS = int(param("max_steps", 10))
INTERVAL_S = float(param("interval_s", 2.5))
SETTLE_S = float(param("settle_s", 2))
P95_LIMIT_MS = float(param("p95_limit_ms", 100))
ERROR_LIMIT = float(param("error_limit", 0.01))
SAVE = "/api/autosave"


class Saver(FastHttpUser):
    wait_time = constant_pacing(INTERVAL_S)

    def on_start(self) -> None:
        self.user_id = f"loadtest-saver-{uuid.uuid4().hex[:10]}"
        self.auth = {"Authorization": f"Bearer {token(self.user_id)}"}
        self.draft_id: str | None = None
        self.edits = 0

    @task
    def save(self) -> None:
        self.edits += 1
        body: dict[str, Any] = {"title": "Capacity", "payload": {"text": "x" * 500, "edits": self.edits}}
        if self.draft_id:
            body["draftId"] = self.draft_id
        with self.client.post(SAVE, name=SAVE, headers=self.auth, json=body, catch_response=True) as response:
            if response.status_code == 202:
                self.draft_id = self.draft_id or response.json()["draftId"]
            else:
                response.failure(f"{response.status_code}: {(response.text or '')[:120]}")


def judge(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """One step's figures from two snapshots of the autosave stats entry."""
    requests = after["requests"] - before["requests"]
    failures = after["failures"] - before["failures"]
    seconds = max(after["at"] - before["at"], 1e-6)
    times = diff_response_time_dicts(after["times"], before["times"])
    p95 = calculate_response_time_percentile(times, requests, 0.95) if requests else None
    ratio = failures / requests if requests else None
    held = requests > 0 and p95 is not None and p95 <= P95_LIMIT_MS and (ratio or 0) <= ERROR_LIMIT
    return {"requests": requests, "rate": round(requests / seconds, 2), "p95_ms": p95,
            "error_ratio": ratio, "held": held, "start": before["at"], "end": after["at"]}


class StepShape(LoadTestShape):
    def __init__(self) -> None:
        super().__init__()
        self.current = 0
        self.mark: dict[str, Any] | None = None
        RESULT["capacity"] = {"steps": [], "last_held": None, "limits": {"p95_ms": P95_LIMIT_MS, "error_ratio": ERROR_LIMIT},
                              "interval_s": INTERVAL_S, "step_users": STEP_USERS}

    def _snapshot(self) -> dict[str, Any]:
        assert self.runner is not None
        entry = self.runner.stats.entries.get((SAVE, "POST"))
        return {"at": time.time(), "requests": entry.num_requests if entry else 0,
                "failures": entry.num_failures if entry else 0, "times": dict(entry.response_times) if entry else {}}

    def _close_step(self) -> bool:
        """Judge the step that just ended; True to go on."""
        result = RESULT["capacity"]
        if self.mark is None:
            return True
        step = {"step": self.current, "users": self.current * STEP_USERS,
                "target_rate": round(self.current * STEP_USERS / INTERVAL_S, 2), **judge(self.mark, self._snapshot())}
        result["steps"].append(step)
        print(f"capacity step {self.current}: {step['users']} savers, {step['rate']} saves/s, "
              f"p95 {step['p95_ms']} ms, errors {step['error_ratio']}: {'held' if step['held'] else 'broke'}", flush=True)
        if not step["held"]:
            result["stopped_because"] = f"step {self.current} broke the limits"
            return False
        result["last_held"] = step
        if self.current >= MAX_STEPS:
            result["stopped_because"] = f"every step up to max_steps={MAX_STEPS} held"
            return False
        return True

    def tick(self) -> tuple[int, float] | None:
        run_time = self.get_run_time()
        step = int(run_time // STEP_S) + 1
        if step != self.current:
            if self.current and not self._close_step():
                return None
            self.current, self.mark = step, None
        if self.mark is None and run_time - (step - 1) * STEP_S >= SETTLE_S:
            self.mark = self._snapshot()
        users = step * STEP_USERS
        return users, float(max(users, 10))
