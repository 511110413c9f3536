"""Throwaway PostgreSQL and Redis servers for ``make up`` and the test suite.

Each runs from a directory of its own on a free loopback port and never touches anyone's data.
PostgreSQL refuses to run as root, so as root its commands run as the ``postgres`` OS user.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

PG_BIN_CANDIDATES = ("/usr/lib/postgresql/15/bin", "/usr/lib/postgresql/16/bin", "/usr/lib/postgresql/17/bin")


class DevstackError(RuntimeError):
    """A throwaway server could not be started; the message says what to install or check."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise DevstackError(f"server on port {port} exited with code {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return
        time.sleep(0.05)
    raise DevstackError(f"nothing listened on 127.0.0.1:{port} within {timeout:.0f} s")


def terminate(proc: subprocess.Popen[bytes] | None, timeout: float = 10) -> None:
    """SIGTERM a child still running, then SIGKILL if it has not exited within ``timeout`` s."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def _pg_bin() -> Path:
    for candidate in PG_BIN_CANDIDATES:
        if Path(candidate, "initdb").exists():
            return Path(candidate)
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    raise DevstackError("PostgreSQL server binaries not found: apt-get install postgresql-15")


def _as_postgres() -> list[str]:
    return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []


@dataclass
class PostgresServer:
    """``initdb`` + ``pg_ctl`` in ``root``; database ``draftwire`` owned by superuser ``postgres``."""

    root: Path
    port: int = field(default_factory=free_port)
    database: str = "draftwire"

    @property
    def data(self) -> Path:
        return self.root / "pgdata"

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{self.database}"

    def _run(self, *args: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run([*_as_postgres(), *args], capture_output=True, check=False)  # noqa: S603

    def start(self) -> PostgresServer:
        bin_dir = _pg_bin()
        self.root.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
        if not (self.data / "PG_VERSION").exists():
            done = self._run(str(bin_dir / "initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust",
                             "-E", "UTF8", "--no-sync")
            if done.returncode:
                raise DevstackError(f"initdb failed: {done.stderr.decode()[-500:]}")
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
        done = self._run(str(bin_dir / "pg_ctl"), "-D", str(self.data), "-l", str(self.root / "postgres.log"),
                         "-o", options, "-w", "-t", "30", "start")
        if done.returncode:
            log_path = self.root / "postgres.log"
            log = log_path.read_text(errors="replace")[-800:] if log_path.exists() else ""
            raise DevstackError(f"pg_ctl start failed: {done.stderr.decode()[-300:]} {log}")
        created = self._run(str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
                            self.database)
        if created.returncode and b"already exists" not in created.stderr:
            raise DevstackError(f"createdb failed: {created.stderr.decode()[-300:]}")
        return self

    def stop(self, mode: str = "fast") -> None:
        self._run(str(_pg_bin() / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "-t", "30", "stop")

    def restart(self) -> None:
        self.stop()
        self.start()


@dataclass
class RedisServer:
    """``redis-server`` in the foreground of a child process; no persistence unless ``aof``."""

    root: Path
    port: int = field(default_factory=free_port)
    aof: bool = False
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        binary = shutil.which("redis-server")
        if binary is None:
            raise DevstackError("redis-server not found: apt-get install redis-server")
        self.root.mkdir(parents=True, exist_ok=True)
        args = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.root), "--save", "",
                "--appendonly", "yes" if self.aof else "no", "--logfile", str(self.root / "redis.log"),
                "--databases", "64"]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # noqa: S603
        wait_for_port(self.port, 10, self.proc)
        return self

    def stop(self) -> None:
        terminate(self.proc)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()


def up(root: Path = Path(".data")) -> int:
    """``make up``: dependencies (unless DATABASE_URL/REDIS_URL are set), migrations, API and
    worker; print where everything is and a ready-to-paste curl; Ctrl-C stops it all."""
    import asyncio
    import signal
    import sys

    from app.auth import issue
    from app.config import load
    from app.db.migrate import migrate

    root = root.resolve()
    env = dict(os.environ)
    stoppers: list[object] = []
    procs: list[subprocess.Popen[bytes]] = []

    def step(text: str) -> None:
        print(f"==> {text}", flush=True)

    # Ctrl-C must stop everything even when started from a script that ignores SIGINT for its
    # background jobs (Python then never installs its KeyboardInterrupt handler).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        if not env.get("DATABASE_URL"):
            step(f"starting PostgreSQL under {root / 'pg'}")
            pg = PostgresServer(root / "pg", port=int(env.get("DEV_PG_PORT", "55432"))).start()
            stoppers.append(pg)
            env["DATABASE_URL"] = pg.url
        if not env.get("REDIS_URL"):
            step(f"starting Redis under {root / 'redis'} (AOF on)")
            redis = RedisServer(root / "redis", port=int(env.get("DEV_REDIS_PORT", "56379")), aof=True).start()
            stoppers.append(redis)
            env["REDIS_URL"] = redis.url
        os.environ.update(env)
        settings = load()
        step("applying migrations")
        applied = asyncio.run(migrate(settings.database_url, progress=lambda line: print(f"    {line}")))
        if not applied:
            print("    schema up to date")
        exe = str(Path(sys.executable).with_name("draftwire"))
        logs = root / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        for kind in ("api", "worker"):
            step(f"starting {kind} (logs: {logs / (kind + '.log')})")
            log_file = (logs / f"{kind}.log").open("ab")
            procs.append(subprocess.Popen([exe, kind], env=env, stdout=log_file, stderr=subprocess.STDOUT))  # noqa: S603
        wait_for_port(settings.port, 30, procs[0])
        wait_for_port(settings.worker_metrics_port, 30, procs[1])
        extra = _start_monitoring(root, settings, procs)
        token = issue(settings.jwt_secret, "dev-user", ttl_seconds=86400)
        print(
            f"""
Draftwire is up.
  API       http://127.0.0.1:{settings.port}   (/healthz /readyz /health /metrics)
  Worker    http://127.0.0.1:{settings.worker_metrics_port}   (/healthz /metrics)
{extra}
Save a draft:
  curl -sS -X POST http://127.0.0.1:{settings.port}/api/autosave \\
    -H 'Authorization: Bearer {token}' -H 'Content-Type: application/json' \\
    -d '{{"title": "My first draft", "payload": {{"intro": "Hello"}}}}'

Ctrl-C stops everything started here.""",
            flush=True,
        )
        signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt))
        while all(p.poll() is None for p in procs):
            time.sleep(0.5)
        dead = [p.args for p in procs if p.poll() is not None]
        print(f"!! a process exited: {dead}; see {logs}", flush=True)
        return 1
    except KeyboardInterrupt:
        print("\n==> stopping", flush=True)
        return 0
    except DevstackError as exc:
        print(f"!! {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        for proc in reversed(procs):
            if proc.poll() is None:
                proc.terminate()
        for proc in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(35)
        for stopper in reversed(stoppers):
            stopper.stop()  # type: ignore[attr-defined]


# --- monitoring: Prometheus, Alertmanager and a webhook receiver, for `make up` and live tests ---
REPO = Path(__file__).resolve().parents[1]
RULES_DIR = REPO / "alerts"
ALERTMANAGER_SOURCE = REPO / "compose" / "alertmanager" / "alertmanager.yml"
ALERT_SINK = REPO / "compose" / "alert-sink" / "sink.py"
API_JOB, WORKER_JOB = "draftwire-api", "draftwire-worker"
"""Scrape job names; the rules and dashboards select on them (as in compose/prometheus/prometheus.yml)."""
SINK_HOST = "http://alert-sink:9095"
"""Where alertmanager.yml's webhooks point in compose; local runs swap in a loopback receiver."""


def prometheus_config(
    *,
    api: list[str],
    worker: list[str],
    rule_files: list[Path],
    alertmanager: str | None = None,
    interval_s: float = 15,
) -> str:
    """prometheus.yml scraping ``host:port`` targets under the jobs our rules and dashboards
    select on, loading ``rule_files``, alerting ``alertmanager`` (``host:port``) if given."""
    import yaml

    interval = f"{interval_s:g}s"
    config: dict[str, object] = {
        # A scrape may not take longer than its interval (Prometheus refuses the config).
        "global": {"scrape_interval": interval, "evaluation_interval": interval,
                   "scrape_timeout": f"{min(interval_s, 5):g}s"},
        "rule_files": [str(path) for path in rule_files],
        "scrape_configs": [
            {"job_name": API_JOB, "static_configs": [{"targets": api}]},
            {"job_name": WORKER_JOB, "static_configs": [{"targets": worker}]},
        ],
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


def alertmanager(root: Path, sink_url: str, port: int) -> Daemon:
    """Alertmanager with our routing (see :func:`alertmanager_config`), data in ``root/data``,
    clustering off; not started."""
    root.mkdir(parents=True, exist_ok=True)
    key = root / "pagerduty_routing_key"
    key.write_text("local-routing-key\n")  # pages go to the local receiver, never to PagerDuty
    (root / "alertmanager.yml").write_text(alertmanager_config(sink_url, key))
    argv = [_binary("prometheus-alertmanager"), f"--config.file={root / 'alertmanager.yml'}",
            f"--storage.path={root / 'data'}", f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address="]
    return Daemon("alertmanager", argv, port, root / "alertmanager.log")


def alert_sink(root: Path, port: int) -> Daemon:
    """compose's alert-sink webhook receiver (one JSON line per notification, GET /received)."""
    import sys

    argv = [sys.executable, str(ALERT_SINK), "--host", "127.0.0.1", "--port", str(port)]
    return Daemon("alert-sink", argv, port, root / "alert-sink.log", ready_path="/healthz")


def _start_monitoring(root: Path, settings: object, procs: list[subprocess.Popen[bytes]]) -> str:
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


if __name__ == "__main__":
    import sys

    sys.exit(up())
