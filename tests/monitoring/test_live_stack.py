"""A real Prometheus scraping a real API and worker under a little traffic: every dashboard panel
query returns data, every metric a rule or panel reads is exported, and no alert fires on a
healthy stack.

Prometheus is Debian's ``/usr/bin/prometheus`` with the config ``make up`` uses
(``devstack.monitoring.prometheus_config``; 1 s scrape and evaluation here so the test is quick), our
``alerts/*.rules.yml`` unchanged and exemplar storage on. The API and worker run against the
session's Postgres and a Redis of this module's own, so no other suite's worker takes our jobs.
The traffic is ``loadtests.demo.Traffic``: what ``make demo`` sends.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from app.queue.names import BUILD
from app.queue.redis_queue import DraftwireQueue
from app.queue.worker import job_defaults
from devstack import monitoring as devstack
from devstack.monitoring import Daemon
from devstack.servers import RedisServer
from loadtests.demo import Traffic
from tests.support.processes import TEST_SECRET, ServiceProcess

from . import metric_names, stack

GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "1h"}
"""Grafana's built-in variables, as a dashboard over the last hour at 1 s scrapes would see them."""
SCRAPE_S = 1.0
PANELS_DEADLINE_S = 60.0
"""How long the panels may take to show data (the slowest is a rate over two scrapes of a
histogram that the worker only creates on its first flush)."""

# --- helpers shared with test_live_fault.py ----------------------------------------------------


@dataclass(frozen=True)
class PanelQuery:
    """One target of one dashboard panel, with Grafana's variables substituted."""

    dashboard: str
    title: str
    ref: str
    expr: str
    fault_only: bool

    def __str__(self) -> str:
        return f"{self.dashboard} / {self.title} [{self.ref}]: {self.expr}"


def grafana_to_promql(expr: str) -> str:
    """A panel's query as Prometheus runs it: built-in variables as above, template variables
    (``$queue``, ``${route}``) as the match-anything regex ``.*``."""
    for name, value in GRAFANA_VARIABLES.items():
        expr = expr.replace("${" + name[1:] + "}", value).replace(name, value)
    return re.sub(r"\$\{?\w+\}?", ".*", expr)


def panel_queries() -> list[PanelQuery]:
    """Every Prometheus target of every committed dashboard."""
    return [
        PanelQuery(stem, p["title"], t["refId"], grafana_to_promql(t["expr"]),
                   "[fault-only]" in (p.get("description") or ""))
        for stem, p in stack.panels()
        for t in p.get("targets", [])
        if t.get("expr")
    ]


@dataclass
class Prometheus:
    """Prometheus' HTTP API, read through one client."""

    url: str
    http: httpx.AsyncClient = field(default_factory=lambda: httpx.AsyncClient(timeout=10))

    async def query(self, expr: str) -> list[float]:
        """The instant values of ``expr`` now (NaN included; empty when it selects nothing)."""
        response = await self.http.get(f"{self.url}/api/v1/query", params={"query": expr})
        body = response.json()
        assert body["status"] == "success", f"{expr}: {body}"
        data = body["data"]
        if data["resultType"] == "scalar":
            return [float(data["result"][1])]
        return [float(sample["value"][1]) for sample in data["result"]]

    async def has_data(self, expr: str, *, positive: bool = False) -> bool:
        """Whether ``expr`` returns a number (and, if ``positive``, one above 0)."""
        values = [v for v in await self.query(expr) if not math.isnan(v)]
        return any(v > 0 for v in values) if positive else bool(values)

    async def alerts(self, *states: str) -> dict[str, dict[str, Any]]:
        """Active alerts by name (the last seen of each), in the given states."""
        body = (await self.http.get(f"{self.url}/api/v1/alerts")).json()
        return {a["labels"]["alertname"]: a for a in body["data"]["alerts"] if a["state"] in states}

    async def wait(self, what: str, condition: Callable[[], Any], seconds: float,
                   between: Callable[[], Any] | None = None) -> None:
        """Poll the async ``condition`` each second (running ``between`` meanwhile) until true."""
        deadline = time.monotonic() + seconds
        while not await condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {seconds:g} s waiting for {what}")
            if between is not None:
                await between()
            await asyncio.sleep(SCRAPE_S)

    async def aclose(self) -> None:
        await self.http.aclose()


def start_prometheus(root: Path, api: ServiceProcess, worker: ServiceProcess, rule_files: list[Path],
                     alertmanager: str | None = None) -> Daemon:
    """Prometheus scraping ``api`` and ``worker`` each second with ``rule_files``, started."""
    config = devstack.prometheus_config(
        api=[f"127.0.0.1:{api.port}"], worker=[f"127.0.0.1:{worker.port}"], rule_files=rule_files,
        alertmanager=alertmanager, interval_s=SCRAPE_S,
    )
    return devstack.prometheus(root, config, stack.free_port(), retention="1d").start()


async def enqueue_failing_job(redis_url: str, attempts: int = 3) -> None:
    """A poisoned build job (the worker's DRAFTWIRE_TEST_JOBS handler that always raises): it is
    retried ``attempts - 1`` times and then dead-lettered."""
    redis = Redis.from_url(redis_url)
    try:
        queue = DraftwireQueue(redis, name=BUILD)
        await queue.connect()
        job = await queue.enqueue("always_fail", key=f"live:{uuid.uuid4()}", **job_defaults(2, attempts))
        assert job is not None
    finally:
        await redis.aclose()


def live_env(redis: RedisServer) -> dict[str, str]:
    """Settings for the live API and worker: this module's Redis, a short flush delay, the
    test-only jobs (a poisoned job drives the retry and dead-letter series)."""
    return {"REDIS_URL": redis.url, "AUTOSAVE_FLUSH_DELAY": "300ms", "DRAFTWIRE_TEST_JOBS": "1",
            "WORKER_TASK_TIMEOUT": "2s"}


# --- the healthy stack -------------------------------------------------------------------------


@contextlib.contextmanager
def app_on_own_redis(
    workdir: Path, spawn: Callable[..., ServiceProcess], name: str
) -> Iterator[tuple[RedisServer, ServiceProcess, ServiceProcess]]:
    """A Redis of its own and an API and a worker on it (see :func:`live_env`); all stopped after."""
    redis = RedisServer(workdir / f"{name}-redis-{uuid.uuid4().hex[:8]}").start()
    procs: list[ServiceProcess] = []
    try:
        for kind in ("api", "worker"):
            procs.append(spawn(kind, **live_env(redis)))
        yield redis, procs[0], procs[1]
    finally:
        for proc in procs:
            proc.stop()
        redis.stop()


@pytest.fixture(scope="module")
def live_app(
    workdir: Path, spawn: Callable[..., ServiceProcess]
) -> Iterator[tuple[RedisServer, ServiceProcess, ServiceProcess]]:
    """(Redis, API, worker) of this module."""
    with app_on_own_redis(workdir, spawn, "live") as started:
        yield started


@dataclass
class Observed:
    """What the healthy run saw, for the tests below to judge."""

    missing: list[PanelQuery]
    fault_only: list[PanelQuery]
    exposition: dict[str, str]
    worker_before_failures: str
    alerts: dict[str, dict[str, Any]]
    readyz_up: list[float]
    exemplars: list[dict[str, Any]]
    traffic: dict[str, int]


@pytest.fixture(scope="module")
async def healthy(
    workdir: Path, live_app: tuple[RedisServer, ServiceProcess, ServiceProcess]
) -> AsyncIterator[Observed]:
    """Start Prometheus, wait for its first scrapes, send traffic until every non-fault panel
    shows data (or the deadline passes), and record what was seen."""
    live_redis, live_api, live_worker = live_app
    root = workdir / f"live-prometheus-{uuid.uuid4().hex[:8]}"
    daemon = start_prometheus(root, live_api, live_worker, stack.RULE_FILES)
    prom = Prometheus(daemon.url)
    traffic = Traffic(live_api.url, TEST_SECRET)
    stop_following = asyncio.Event()
    try:
        await prom.wait("both targets scraped", lambda: prom.has_data(
            'sum(up{job=~"draftwire-api|draftwire-worker"}) == 2'), 20)
        worker_before = (await prom.http.get(f"{live_worker.url}/metrics")).text
        users = [f"live-{i}-{uuid.uuid4().hex[:6]}" for i in range(3)]
        drafts = [d for d in [await traffic.save(u) for u in users] if d]
        assert len(drafts) == 3, traffic.counts

        async def persisted() -> bool:
            url = f"{live_api.url}/api/drafts/{drafts[0]}"
            response = await traffic.http.get(url, headers=traffic.headers(users[0]))
            return bool(response.json().get("persisted"))

        await prom.wait("the first draft flushed", persisted, 10)
        # One tab follows the first draft live: each flush of it is a broadcast.
        follower = asyncio.create_task(traffic.follow(users[0], [f"draft:{drafts[0]}"], stop_following))
        # A little of what goes wrong on a good day: too fast a typist, bad input, a forged
        # socket, a poisoned job (retries, then the dead letter).
        await traffic.hit_rate_limit(f"live-fast-{uuid.uuid4().hex[:6]}")
        await traffic.bad_requests(users[1])
        await traffic.refused_socket()
        await enqueue_failing_job(live_redis.url)
        queries = panel_queries()
        rounds = 0

        async def one_round() -> None:
            nonlocal rounds
            rounds += 1
            for user, draft in zip(users, drafts, strict=True):
                await traffic.save(user, draft, words=10 * rounds)
            await traffic.read(users[1], drafts[1])
            await traffic.list_drafts(users[2])
            if rounds % 3 == 1:
                job = await traffic.build(users[1], drafts[1])
                await traffic.follow(users[1], [f"draft:{drafts[1]}", f"job:{job}"])  # a catch-up

        missing: list[PanelQuery] = []

        async def all_panels_have_data() -> bool:
            missing[:] = [q for q in queries if not q.fault_only and not await prom.has_data(q.expr)]
            return not missing

        with contextlib.suppress(AssertionError):  # the panels test names those that stayed empty
            await prom.wait("every panel to show data", all_panels_have_data, PANELS_DEADLINE_S, one_round)
        exposition = {p.kind: (await prom.http.get(f"{p.url}/metrics")).text for p in (live_api, live_worker)}
        exemplars = (await prom.http.get(f"{prom.url}/api/v1/query_exemplars", params={
            "query": 'http_request_duration_seconds_bucket{job="draftwire-api"}',
            "start": time.time() - 300, "end": time.time()})).json()["data"]
        yield Observed(
            missing=missing,
            fault_only=[q for q in queries if q.fault_only],
            exposition=exposition,
            worker_before_failures=worker_before,
            alerts=await prom.alerts("pending", "firing"),
            readyz_up=await prom.query('readyz_up{job="draftwire-api"}'),
            exemplars=exemplars,
            traffic=dict(traffic.counts),
        )
        stop_following.set()
        await asyncio.wait_for(follower, 10)
    finally:
        stop_following.set()
        await traffic.aclose()
        await prom.aclose()
        daemon.stop()


def test_every_panel_query_returns_data(healthy: Observed) -> None:
    """Every query of every dashboard panel, run by a real Prometheus against the running API and
    worker under a little traffic, returns a number (not nothing, not only NaN); panels marked
    [fault-only] are left to test_live_fault.py."""
    assert healthy.fault_only, "some panels are marked [fault-only]"
    assert healthy.missing == [], "panels without data:\n" + "\n".join(map(str, healthy.missing))


def test_every_metric_used_is_exported_live(healthy: Observed) -> None:
    """Every metric name a rule or a panel reads is in the live /metrics of the API or the worker
    (after traffic that includes a 429, a refused socket and a retried job)."""
    exported = set().union(*(metric_names.exposition_metric_names(t) for t in healthy.exposition.values()))
    used = metric_names.used_metric_names()
    assert used - exported == set(), f"read by rules or dashboards but exported by neither: {used - exported}"


def test_prometheus_scrapes_exemplars(healthy: Observed) -> None:
    """Prometheus negotiated OpenMetrics and stored trace_id exemplars of the API's latency
    histogram (the Grafana panels link them to Tempo)."""
    labels = [e["labels"] for series in healthy.exemplars for e in series["exemplars"]]
    assert labels, "no exemplars stored"
    assert all(re.fullmatch(r"[0-9a-f]{32}", lab.get("trace_id", "")) for lab in labels), labels[:3]


def test_healthy_stack_fires_no_unexpected_alert(healthy: Observed) -> None:
    """Under ordinary traffic (a poisoned job and a few 4xx included) no alert is pending or
    firing except BackupTooOld, which a fresh worker earns (it has made no backup yet), and
    JobFailedPermanently, which the poisoned job earns once its last attempt fails (whether that
    lands inside this run depends on the host's speed)."""
    assert set(healthy.alerts) - {"BackupTooOld", "JobFailedPermanently"} == set(), healthy.alerts


def test_readiness_gauge_needs_no_probe(healthy: Observed) -> None:
    """readyz_up reads 1 on a healthy API even when nothing calls /readyz (as under `make up`),
    so APINotReady does not fire on a healthy system."""
    assert healthy.readyz_up == [1.0]
    assert "APINotReady" not in healthy.alerts


def test_failure_counters_exist_before_the_first_failure(healthy: Observed) -> None:
    """A fresh worker exports jobs_processed_total{status="failed"} and job_retries_total at 0 for
    every queue, so JobFailedPermanently and JobRetryStorm see the first failure as an increase."""
    text = healthy.worker_before_failures
    for queue in ("draft-autosave", "draft-build", "maintenance"):
        assert f'jobs_processed_total{{queue="{queue}",status="failed"}}' in text
        assert f'job_retries_total{{queue="{queue}"}}' in text
