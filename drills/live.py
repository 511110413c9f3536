"""The drills' live stack: Postgres, Redis (AOF on), migrations, two API processes (api-2 with a
small REALTIME_MAX_CONNECTIONS), a worker with the test-only jobs, the alert sink, and per drill a
fresh Alertmanager (our routing, grouping timers shortened) and Prometheus (the scaled rules), so
one drill's history never leaks into another's windows or inhibitions. Loopback only."""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from devstack import monitoring
from devstack.monitoring import Daemon
from devstack.processes import ServiceProcess, migrate
from devstack.servers import PostgresServer, RedisServer, free_port
from devstack.stack import SECRET, stack_env
from drills.overlay import scaled_alertmanager, scaled_rules

SCRAPE_S = 1.0
"""Prometheus' scrape and evaluation interval in a drill."""
API2_MAX_CONNECTIONS = 10
"""api-2's REALTIME_MAX_CONNECTIONS: small, so 80 % of it is 9 sockets."""
DRILL_ENV = {
    "LOG_FORMAT": "json",
    "LOG_LEVEL": "INFO",
    "AUTOSAVE_FLUSH_DELAY": "300ms",
    "DRAFTWIRE_TEST_JOBS": "1",
    "WORKER_TASK_TIMEOUT": "5s",
    # The admin publish endpoint shares the 200/min per-client limit; the drills publish more.
    "RATE_LIMIT_REQUESTS": "1000000",
}


@dataclass
class Live:
    """Handles on every part of the running drill stack."""

    root: Path
    pg: PostgresServer
    redis: RedisServer
    env: dict[str, str]
    api: ServiceProcess
    api2: ServiceProcess
    worker: ServiceProcess
    gateway: ServiceProcess
    sink: Daemon
    manager: Daemon
    prometheus: Daemon | None = None
    http: httpx.AsyncClient = field(default_factory=lambda: httpx.AsyncClient(timeout=10))

    @property
    def logs_dir(self) -> Path:
        return self.root / "logs"

    @property
    def prom_url(self) -> str:
        assert self.prometheus is not None, "no Prometheus running"
        return self.prometheus.url

    def token(self, user: str, admin: bool = False) -> str:
        from app.auth import issue

        return issue(SECRET, user, admin=admin, ttl_seconds=7200)

    def admin_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token('drill-oncall', admin=True)}"}

    def variables(self) -> dict[str, str]:
        """The runbooks' documented variables, pointing at this stack."""
        return {"API": self.api.url, "API2": self.api2.url, "WORKER": self.worker.url,
                "WORKER2": self.worker.url, "GATEWAY": self.gateway.url, "PROM": self.prom_url,
                "AM": self.manager.url,
                "TOKEN": self.token("drill-oncall", admin=True)}

    # --- Prometheus, Alertmanager, sink ---------------------------------------------------

    def fresh_monitoring(self, name: str) -> Daemon:
        """Stop the previous Prometheus and Alertmanager; start both with empty storage (the scaled
        rules, our routing), so no alert of an earlier drill is still active or inhibiting."""
        if self.prometheus is not None:
            self.prometheus.stop()
        self.manager.stop()
        self.manager = monitoring.alertmanager(self.root / "monitoring" / name, self.sink.url, free_port(),
                                               overlay=scaled_alertmanager).start()
        root = self.root / "prometheus" / name
        rules = scaled_rules(root / "rules")
        config = monitoring.prometheus_config(
            api=[f"127.0.0.1:{self.api.port}", f"127.0.0.1:{self.api2.port}"],
            worker=[f"127.0.0.1:{self.worker.port}"], gateway=[f"127.0.0.1:{self.gateway.port}"],
            rule_files=rules,
            alertmanager=f"127.0.0.1:{self.manager.port}", interval_s=SCRAPE_S)
        self.prometheus = monitoring.prometheus(root, config, free_port(), retention="1d").start()
        return self.prometheus

    async def query(self, expr: str) -> list[dict[str, Any]]:
        body = (await self.http.get(f"{self.prom_url}/api/v1/query", params={"query": expr})).json()
        if body.get("status") != "success":
            raise RuntimeError(f"{expr}: {body}")
        return list(body["data"]["result"])

    async def prom_alerts(self, name: str, labels: dict[str, str], state: str = "firing") -> list[dict[str, Any]]:
        body = (await self.http.get(f"{self.prom_url}/api/v1/alerts")).json()
        return [a for a in body["data"]["alerts"]
                if a["labels"].get("alertname") == name and a["state"] == state
                and all(a["labels"].get(k) == v for k, v in labels.items())]

    async def manager_alerts(self, name: str, labels: dict[str, str]) -> list[dict[str, Any]]:
        found = (await self.http.get(f"{self.manager.url}/api/v2/alerts")).json()
        return [a for a in found if a["labels"].get("alertname") == name
                and all(a["labels"].get(k) == v for k, v in labels.items())]

    async def received(self, name: str, since: float) -> list[dict[str, Any]]:
        """Notifications at the sink naming ``name`` (newest last), taken after ``since``
        (index into the sink's list, as returned by :meth:`sink_mark`)."""
        got = (await self.http.get(f"{self.sink.url}/received")).json()
        return [n for n in got[int(since):]
                if any(a["labels"].get("alertname") == name for a in n["body"].get("alerts", []))]

    async def sink_mark(self) -> int:
        return len((await self.http.get(f"{self.sink.url}/received")).json())

    async def wait_targets(self, within: float = 60) -> None:
        async def ready() -> bool:
            up = await self.query('up{job=~"draftwire-.*"} == 1')
            ready = await self.query('readyz_up{job="draftwire-api"} == 1')
            return len(up) == 4 and len(ready) == 2

        await wait_until("Prometheus scraping 4 healthy targets (2 APIs, worker, gateway)", ready, within)

    # --- app helpers ------------------------------------------------------------------------

    async def publish(self, channel: str, n: int = 1, base: str | None = None) -> int:
        """``n`` events through the admin endpoint; the last seq."""
        seq = 0
        for _ in range(n):
            r = await self.http.post(f"{base or self.api.url}/api/admin/channels/{channel}/events",
                                     json={"type": "drill.tick", "data": {}}, headers=self.admin_headers())
            r.raise_for_status()
            seq = int(r.json()["seq"])
        return seq

    async def save(self, user: str, draft_id: str | None = None, base: str | None = None) -> httpx.Response:
        body: dict[str, Any] = {"title": "drill", "payload": {"at": time.time()}}
        if draft_id:
            body["draftId"] = draft_id
        return await self.http.post(f"{base or self.api.url}/api/autosave", json=body,
                                    headers={"Authorization": f"Bearer {self.token(user)}"})

    async def aclose(self) -> None:
        await self.http.aclose()


async def wait_until(what: str, condition: Callable[[], Awaitable[bool]], within: float,
                     every: float = SCRAPE_S) -> float:
    """Poll ``condition`` until true; the seconds it took. Raises TimeoutError naming ``what``."""
    start = time.monotonic()
    while True:
        with contextlib.suppress(httpx.HTTPError):
            if await condition():
                return time.monotonic() - start
        if time.monotonic() - start > within:
            raise TimeoutError(f"timed out after {within:g} s waiting for {what}")
        await asyncio.sleep(every)


@contextlib.contextmanager
def live_stack(keep: Path | None = None) -> Iterator[Live]:
    """Start the whole drill stack in a temporary directory (or ``keep``); stop it all after."""
    with contextlib.ExitStack() as stack:
        if keep is None:
            root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="draftwire-drill-")))
        else:
            root = keep
            root.mkdir(parents=True, exist_ok=True)
        os.chmod(root, 0o755)  # noqa: S103 - initdb runs as the postgres OS user
        pg = PostgresServer(root / "pg").start()
        stack.callback(pg.stop, "immediate")
        redis = RedisServer(root / "redis", aof=True).start()
        stack.callback(redis.stop)
        env = stack_env(pg, redis, **DRILL_ENV, BACKUP_DIR=str(root / "backups"))
        migrate(env)
        logs = root / "logs"
        api = ServiceProcess("api", env, logs / "api.log").start()
        stack.callback(api.stop)
        api2 = ServiceProcess("api", {**env, "REALTIME_MAX_CONNECTIONS": str(API2_MAX_CONNECTIONS)},
                              logs / "api2.log").start()
        stack.callback(api2.stop)
        worker = ServiceProcess("worker", env, logs / "worker.log").start()
        stack.callback(worker.stop)
        gateway = ServiceProcess("gateway", env, logs / "gateway.log").start()
        stack.callback(gateway.stop)
        mon = root / "monitoring"
        sink = monitoring.alert_sink(mon, free_port()).start()
        stack.callback(sink.stop)
        manager = monitoring.alertmanager(mon / "alertmanager", sink.url, free_port(),
                                          overlay=scaled_alertmanager).start()
        live = Live(root, pg, redis, env, api, api2, worker, gateway, sink, manager)
        stack.callback(lambda: live.manager.stop())
        stack.callback(lambda: live.prometheus.stop() if live.prometheus else None)
        yield live
