"""Prometheus (our rules), Alertmanager (our routing) and the alert-sink webhook receiver from
Debian's packages, for ``make up``, the live monitoring tests and the drills."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devstack.servers import DevstackError, terminate

REPO = Path(__file__).resolve().parents[1]
"""The repository: devstack runs from a source checkout, never from an installed wheel."""
RULES_DIR = REPO / "alerts"
ALERTMANAGER_SOURCE = REPO / "compose" / "alertmanager" / "alertmanager.yml"
ALERT_SINK = REPO / "compose" / "alert-sink" / "sink.py"
API_JOB, WORKER_JOB, GATEWAY_JOB = "draftwire-api", "draftwire-worker", "draftwire-gateway"
"""Scrape job names; the rules and dashboards select on them (as in compose/prometheus/prometheus.yml)."""
SINK_HOST = "http://alert-sink:9095"
"""Where alertmanager.yml's webhooks point in compose; local runs swap in a loopback receiver."""


def prometheus_config(
    *,
    api: list[str],
    worker: list[str],
    rule_files: list[Path],
    gateway: list[str] | None = None,
    alertmanager: str | None = None,
    interval_s: float = 15,
) -> str:
    """prometheus.yml scraping ``host:port`` targets under the jobs our rules and dashboards
    select on (``gateway``: ``draftwire gateway`` processes, if any), loading ``rule_files``,
    alerting ``alertmanager`` (``host:port``) if given."""
    import yaml

    interval = f"{interval_s:g}s"
    scrape_configs: list[dict[str, object]] = [
        {"job_name": API_JOB, "static_configs": [{"targets": api}]},
        {"job_name": WORKER_JOB, "static_configs": [{"targets": worker}]},
    ]
    if gateway:  # realtime gateway processes (draftwire gateway), when the stack runs any
        scrape_configs.append({"job_name": GATEWAY_JOB, "static_configs": [{"targets": gateway}]})
    config: dict[str, object] = {
        # A scrape may not take longer than its interval (Prometheus refuses the config).
        "global": {"scrape_interval": interval, "evaluation_interval": interval,
                   "scrape_timeout": f"{min(interval_s, 5):g}s"},
        "rule_files": [str(path) for path in rule_files],
        "scrape_configs": scrape_configs,
    }
    if alertmanager:
        config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [alertmanager]}]}]}
    return str(yaml.safe_dump(config, sort_keys=False))


def alertmanager_config(sink_url: str, key_file: Path, source: Path = ALERTMANAGER_SOURCE) -> str:
    """compose's alertmanager.yml with every notification sent to the webhook receiver at
    ``sink_url``: the webhooks by swapping the alert-sink host, PagerDuty through
    ``global.pagerduty_url`` (path ``/pagerduty``) with its key read from ``key_file``."""
    import yaml

    text = source.read_text()
    if SINK_HOST not in text:
        raise DevstackError(f"{source} no longer names {SINK_HOST}; update alertmanager_config")
    config = yaml.safe_load(text.replace(SINK_HOST, sink_url))
    config["global"]["pagerduty_url"] = f"{sink_url}/pagerduty"
    for receiver in config["receivers"]:
        for pagerduty in receiver.get("pagerduty_configs", []):
            pagerduty["routing_key_file"] = str(key_file)
    return str(yaml.safe_dump(config, sort_keys=False))


@dataclass
class Daemon:
    """A long-running server started from ``argv`` and ready once ``ready_path`` answers 200
    on its loopback ``port``; its output goes to ``log``."""

    name: str
    argv: list[str]
    port: int
    log: Path
    ready_path: str = "/-/ready"
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30) -> Daemon:
        import urllib.request

        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(self.argv, stdout=out, stderr=subprocess.STDOUT)  # noqa: S603
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                tail = self.log.read_text(errors="replace")[-600:]
                raise DevstackError(f"{self.name} exited with code {self.proc.returncode}: {tail}")
            ready = self.url + self.ready_path
            with contextlib.suppress(OSError), urllib.request.urlopen(ready, timeout=1) as r:  # noqa: S310 - loopback
                if r.status == 200:
                    return self
            time.sleep(0.1)
        self.stop()
        raise DevstackError(f"{self.name} not ready on {self.url} within {timeout:.0f} s; see {self.log}")

    def stop(self) -> None:
        terminate(self.proc)


def _binary(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise DevstackError(f"{name} not found: apt-get install {name} (scripts/system-deps.sh)")
    return found


def prometheus(root: Path, config: str, port: int, retention: str = "15d") -> Daemon:
    """Prometheus with ``config`` (written to ``root/prometheus.yml``), data in ``root/data``,
    exemplar storage on; not started."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "prometheus.yml").write_text(config)
    argv = [_binary("prometheus"), f"--config.file={root / 'prometheus.yml'}",
            f"--storage.tsdb.path={root / 'data'}", f"--storage.tsdb.retention.time={retention}",
            f"--web.listen-address=127.0.0.1:{port}", "--enable-feature=exemplar-storage"]
    return Daemon("prometheus", argv, port, root / "prometheus.log")


def alertmanager(root: Path, sink_url: str, port: int,
                 overlay: Callable[[dict[str, Any]], dict[str, Any]] | None = None) -> Daemon:
    """Alertmanager with our routing (see :func:`alertmanager_config`), data in ``root/data``,
    clustering off; not started. ``overlay`` rewrites the parsed config first (the drills'
    shorter grouping timers)."""
    import yaml

    root.mkdir(parents=True, exist_ok=True)
    key = root / "pagerduty_routing_key"
    key.write_text("local-routing-key\n")  # pages go to the local receiver, never to PagerDuty
    config = alertmanager_config(sink_url, key)
    if overlay is not None:
        config = str(yaml.safe_dump(overlay(yaml.safe_load(config)), sort_keys=False))
    (root / "alertmanager.yml").write_text(config)
    argv = [_binary("prometheus-alertmanager"), f"--config.file={root / 'alertmanager.yml'}",
            f"--storage.path={root / 'data'}", f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address="]
    return Daemon("alertmanager", argv, port, root / "alertmanager.log")


def alert_sink(root: Path, port: int) -> Daemon:
    """compose's alert-sink webhook receiver (one JSON line per notification, GET /received)."""
    import sys

    argv = [sys.executable, str(ALERT_SINK), "--host", "127.0.0.1", "--port", str(port)]
    return Daemon("alert-sink", argv, port, root / "alert-sink.log", ready_path="/healthz")


def start_monitoring(root: Path, settings: object, procs: list[subprocess.Popen[bytes]]) -> str:
    """Prometheus (our rules, scraping this API and worker) and Alertmanager (routing to a local
    alert-sink) from Debian's packages, when installed; the lines to print with their URLs."""
    if not (shutil.which("prometheus") and shutil.which("prometheus-alertmanager")):
        return "  Monitoring  not started: apt-get install prometheus prometheus-alertmanager\n"
    ports = {name: int(os.environ.get(f"DEV_{name.upper()}_PORT", default))
             for name, default in (("prometheus", 9090), ("alertmanager", 9093), ("alert_sink", 9095))}
    sink = alert_sink(root / "logs", ports["alert_sink"])
    manager = alertmanager(root / "alertmanager", sink.url, ports["alertmanager"])
    # 5 s, not compose's 15 s: a newcomer running `make demo` sees panels move within seconds.
    config = prometheus_config(
        api=[f"127.0.0.1:{settings.port}"],  # type: ignore[attr-defined]
        worker=[f"127.0.0.1:{settings.worker_metrics_port}"],  # type: ignore[attr-defined]
        rule_files=sorted(RULES_DIR.glob("*.rules.yml")),
        alertmanager=f"127.0.0.1:{ports['alertmanager']}",
        interval_s=5,
    )
    server = prometheus(root / "prometheus", config, ports["prometheus"])
    for daemon in (sink, manager, server):
        print(f"==> starting {daemon.name} (logs: {daemon.log})", flush=True)
        daemon.start()
        assert daemon.proc is not None
        procs.append(daemon.proc)
    return (
        f"  Prometheus   {server.url}   (alerts: {server.url}/alerts)\n"
        f"  Alertmanager {manager.url}\n"
        f"  Alert sink   {sink.url}/received   (pages and tickets; log: {sink.log})\n"
        "  Traffic      make demo   (dashboards: docker compose, see compose/README.md)\n"
    )
