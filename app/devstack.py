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
            log = (self.root / "postgres.log").read_text(errors="replace")[-800:] if (self.root / "postgres.log").exists() else ""
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
                "--appendonly", "yes" if self.aof else "no", "--logfile", str(self.root / "redis.log")]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # noqa: S603
        wait_for_port(self.port, 10, self.proc)
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
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


def _start_monitoring(root: Path, settings: object, procs: list[subprocess.Popen[bytes]]) -> str:
    """Prometheus and Alertmanager from Debian's packages, when installed (issue: monitoring)."""
    return ""


if __name__ == "__main__":
    import sys

    sys.exit(up())
