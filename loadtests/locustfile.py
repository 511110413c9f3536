"""Locust scenarios that prove the runbook SLOs and fail the run when they do not hold.

    JWT_SECRET=... locust -f loadtests/locustfile.py --headless -u 50 -r 10 -t 2m --host http://127.0.0.1:8080

Users behave like the seed-000 client: saves debounced to every 0.8-3 s, reads now and then.
At the end the run's exit code is 1 when an SLO of the contract is broken (thresholds can be
tightened or loosened by environment for experiments; the defaults are the contract's):

- ``SLO_AUTOSAVE_P95_MS`` (500): p95 of ``POST /api/autosave``
- ``SLO_ERROR_RATIO`` (0.05): share of 5xx (and connection failures) over all requests
- 429s are expected when users out-type the 30/min limit; they are counted apart, not as errors.
"""

from __future__ import annotations

import os
import random
import uuid

from locust import HttpUser, between, events, task

from app.auth import issue

SECRET = os.environ.get("JWT_SECRET", "dev-only-insecure-secret-change-me")
AUTOSAVE_P95_MS = float(os.environ.get("SLO_AUTOSAVE_P95_MS", "500"))
ERROR_RATIO = float(os.environ.get("SLO_ERROR_RATIO", "0.05"))

_server_errors = {"count": 0}


class Writer(HttpUser):
    """One person editing a couple of drafts."""

    wait_time = between(0.8, 3.0)

    def on_start(self) -> None:
        self.user_id = f"locust-{uuid.uuid4().hex[:10]}"
        self.client.headers["Authorization"] = f"Bearer {issue(SECRET, self.user_id, ttl_seconds=6 * 3600)}"
        self.drafts: list[str] = []
        self.edits = 0

    def _save(self, draft_id: str | None) -> None:
        self.edits += 1
        body = {"title": f"Draft by {self.user_id}", "payload": {"intro": "x" * random.randint(50, 2000), "n": self.edits}}
        if draft_id:
            body["draftId"] = draft_id
        with self.client.post("/api/autosave", json=body, name="/api/autosave", catch_response=True) as response:
            if response.status_code == 202:
                if draft_id is None:
                    self.drafts.append(response.json()["draftId"])
                response.success()
            elif response.status_code == 429:
                response.success()  # the limit doing its job; counted by the API's rate_limit_events_total
            else:
                if response.status_code >= 500 or response.status_code == 0:
                    _server_errors["count"] += 1
                response.failure(f"{response.status_code}: {response.text[:200]}")

    @task(10)
    def autosave(self) -> None:
        self._save(random.choice(self.drafts) if self.drafts and random.random() < 0.9 else None)

    @task(2)
    def read_draft(self) -> None:
        if self.drafts:
            self.client.get(f"/api/drafts/{random.choice(self.drafts)}", name="/api/drafts/{draft_id}")

    @task(1)
    def list_drafts(self) -> None:
        self.client.get("/api/drafts?limit=20", name="/api/drafts")


@events.quitting.add_listener
def enforce_slos(environment, **_kwargs) -> None:  # type: ignore[no-untyped-def]
    """Fail the run (exit code 1) when the contract's SLOs did not hold."""
    stats = environment.stats
    save = stats.get("/api/autosave", "POST")
    problems = []
    if save.num_requests == 0:
        problems.append("no autosave request was made")
    else:
        p95 = save.get_response_time_percentile(0.95)
        if p95 > AUTOSAVE_P95_MS:
            problems.append(f"autosave p95 {p95:.0f} ms > {AUTOSAVE_P95_MS:.0f} ms")
    total = stats.total.num_requests
    errors = _server_errors["count"] + sum(
        e.occurrences for e in stats.errors.values() if "ConnectionError" in str(e.error) or "Timeout" in str(e.error)
    )
    if total and errors / total > ERROR_RATIO:
        problems.append(f"error ratio {errors / total:.3f} > {ERROR_RATIO}")
    for problem in problems:
        print(f"SLO BROKEN: {problem}")
    if problems:
        environment.process_exit_code = 1
    else:
        print(f"SLOs held: autosave p95 {save.get_response_time_percentile(0.95):.0f} ms over {save.num_requests} saves")
