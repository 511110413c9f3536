"""``make up``: throwaway Postgres and Redis under ``.data`` (unless DATABASE_URL / REDIS_URL are
set), migrations, the API and a worker, Prometheus with our rules and Alertmanager with our
routing; it prints where everything is and a ready-to-paste curl, and Ctrl-C stops it all."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from devstack.monitoring import start_monitoring
from devstack.processes import ServiceProcess
from devstack.servers import DevstackError, PostgresServer, RedisServer


def up(root: Path = Path(".data")) -> int:
    """``make up``: dependencies (unless DATABASE_URL/REDIS_URL are set), migrations, API and
    worker; print where everything is and a ready-to-paste curl; Ctrl-C stops it all."""
    from app.auth import issue
    from app.config import load
    from app.db.migrate import migrate

    root = root.resolve()
    env = dict(os.environ)
    stoppers: list[object] = []
    services: list[ServiceProcess] = []
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
        logs = root / "logs"
        for kind, port in (("api", settings.port), ("worker", settings.worker_metrics_port)):
            step(f"starting {kind} (logs: {logs / (kind + '.log')})")
            service = ServiceProcess(kind, env, logs / f"{kind}.log", port=port)
            services.append(service)
            service.start()
            assert service.proc is not None
            procs.append(service.proc)
        extra = start_monitoring(root, settings, procs)
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
        for service in reversed(services):
            service.stop()
        for proc in reversed(procs):
            if proc.poll() is None:
                proc.terminate()
        for proc in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(35)
        for stopper in reversed(stoppers):
            stopper.stop()  # type: ignore[attr-defined]
