"""What every scenario's Locust process shares: its parameters, tokens, sample reporting, the
generator's own schedule-lag probe, counts sent to the master, and finishing the run when done.

The suite (``loadtests/suite.py``) starts Locust with these in the environment:

- ``LOADTEST_PARAMS``: the scenario's section of the config, as JSON (sizes, rates, durations);
- ``JWT_SECRET``: to sign the users' session tokens (never logged);
- ``LOADTEST_RESULT``: where the master (or the single process) writes the counts it gathered;
- ``LOADTEST_STARTED``: a file the master touches when the test starts (after start-up);
- ``LOADTEST_CSV``: Locust's ``--csv`` prefix, rewritten with the final figures at exit;
- ``LOADTEST_FAULT`` (tests only): ``drop_one`` / ``dup_one`` make one broadcast subscriber lose
  or repeat one event on the client side; ``hog`` makes the generator busy so it saturates.

Workers on other machines need the same ``LOADTEST_PARAMS`` and ``JWT_SECRET``.
"""

from __future__ import annotations

import csv
import json
import os
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from typing import Any

import gevent
import locust.stats
from locust import events
from locust.env import Environment
from locust.runners import MasterRunner, WorkerRunner
from locust.stats import StatsCSV

from app.auth import issue

# One history row a second (Locust's default is 5 s): the charts of short scenarios need points.
locust.stats.HISTORY_STATS_INTERVAL_SEC = 1

PARAMS: dict[str, Any] = json.loads(os.environ.get("LOADTEST_PARAMS") or "{}")
FAULT = os.environ.get("LOADTEST_FAULT", "")
RUN_ID = str(PARAMS.get("run_id") or f"{int(time.time())}")
COUNTS_MESSAGE = "loadtest_counts"
LAG_NAME = "schedule lag"
"""The ``GEN`` row: how late the generator's event loop woke a 100 ms sleep, worst per second."""
TOKEN_TTL_S = 6 * 3600
SAVE_INTERVAL_S = 60 / 30 + 0.2
"""Seed 000's 30 saves a minute at most, with margin for the limiter's window edges."""

_counts: Counter[str] = Counter()


def param(name: str, default: Any) -> Any:
    return PARAMS.get(name, default)


def token(user_id: str, *, admin: bool = False) -> str:
    secret = os.environ.get("JWT_SECRET")
    if not secret:
        raise SystemExit("JWT_SECRET is not set: the load test signs its users' tokens with the API's secret")
    return issue(secret, user_id, admin=admin, ttl_seconds=TOKEN_TTL_S)


def fire(env: Environment, kind: str, name: str, ms: float, error: str | None = None, length: int = 0) -> None:
    """One sample into Locust's stats (so its tables, HTML report and CSVs show it)."""
    env.events.request.fire(
        request_type=kind, name=name, response_time=ms, response_length=length,
        exception=AssertionError(error) if error else None, context={},
    )


def send_counts(env: Environment, counts: dict[str, int]) -> None:
    """Add ``counts`` to the run's exact totals, gathered on the master (or kept locally)."""
    assert env.runner is not None
    env.runner.send_message(COUNTS_MESSAGE, dict(counts))


def admin_post(host: str, path: str, body: dict[str, Any], admin_token: str, timeout: float = 10) -> dict[str, Any]:
    """A set-up request outside the measurement (stdlib, so it is not a sample)."""
    request = urllib.request.Request(  # noqa: S310 - the host is the one under test
        host.rstrip("/") + path, data=json.dumps(body).encode(), method="POST",
        headers={"Authorization": f"Bearer {admin_token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
        return json.loads(response.read())  # type: ignore[no-any-return]


def admin_get(host: str, path: str, admin_token: str, timeout: float = 5) -> Any:
    request = urllib.request.Request(  # noqa: S310
        host.rstrip("/") + path, headers={"Authorization": f"Bearer {admin_token}"}
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
        return json.loads(response.read())


def entry_count(env: Environment, kind: str, name: str) -> int:
    entry = env.stats.entries.get((name, kind))
    return entry.num_requests if entry else 0


def finish_when(done: Callable[[Environment], bool]) -> None:
    """Quit the run (as ``--run-time`` would) once ``done(environment)`` holds on the master."""

    def watch(env: Environment) -> None:
        while not done(env):
            gevent.sleep(0.25)
        assert env.runner is not None
        env.runner.quit()

    @events.test_start.add_listener
    def _start(environment: Environment, **_: Any) -> None:
        if not isinstance(environment.runner, WorkerRunner):
            gevent.spawn(watch, environment)


def _lag_probe(env: Environment) -> None:
    """The generator falling behind its own schedule shows as late wake-ups of its event loop."""
    worst, second = 0.0, time.monotonic()
    while True:
        asked = time.monotonic()
        gevent.sleep(0.1)
        worst = max(worst, (time.monotonic() - asked - 0.1) * 1000)
        if time.monotonic() - second >= 1:
            fire(env, "GEN", LAG_NAME, worst)
            worst, second = 0.0, time.monotonic()


def _hog() -> None:
    """Test fault ``hog``: keep this process's CPU busy 97 % of the time in 300 ms slices, so the
    generator saturates and its event loop falls behind, yet the run still finishes."""
    while True:
        until = time.perf_counter() + 0.3
        while time.perf_counter() < until:
            pass
        gevent.sleep(0.01)


@events.init.add_listener
def _on_init(environment: Environment, **_: Any) -> None:
    if isinstance(environment.runner, WorkerRunner) or environment.runner is None:
        return

    def gather(environment: Environment, msg: Any, **_: Any) -> None:
        _counts.update(msg.data)

    environment.runner.register_message(COUNTS_MESSAGE, gather)


@events.test_start.add_listener
def _on_test_start(environment: Environment, **_: Any) -> None:
    if not isinstance(environment.runner, WorkerRunner) and os.environ.get("LOADTEST_STARTED"):
        with open(os.environ["LOADTEST_STARTED"], "w") as out:  # the suite watches CPU from here on
            out.write(f"{time.time()}\n")
    if isinstance(environment.runner, MasterRunner):
        return  # the master generates no load; its workers are watched
    gevent.spawn(_lag_probe, environment)
    if FAULT == "hog":
        gevent.spawn(_hog)


@events.quitting.add_listener
def _on_quitting(environment: Environment, **_: Any) -> None:
    if isinstance(environment.runner, WorkerRunner):
        return
    path = os.environ.get("LOADTEST_RESULT")
    if path:
        with open(path, "w") as out:
            json.dump({"counts": dict(_counts), **RESULT}, out)
    prefix = os.environ.get("LOADTEST_CSV")
    if prefix:
        # Locust rewrites its CSVs once a second and not at exit, so a run that ends between two
        # writes would leave its last second out: write the final figures now.
        final = StatsCSV(environment, locust.stats.PERCENTILES_TO_REPORT)
        for suffix, write in (("stats", final.requests_csv), ("failures", final.failures_csv)):
            with open(f"{prefix}_{suffix}.csv", "w", newline="") as out:
                write(csv.writer(out))


RESULT: dict[str, Any] = {}
"""Extra results a scenario's master side records (the capacity steps), written at quitting."""
