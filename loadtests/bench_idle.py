"""Idle sockets on the gateway: N authenticated sockets, one subscription each, held open; the
RSS of ``draftwire gateway`` under each server it can run on, beside the same sockets on a bare
ASGI app (loadtests/bare_ws.py) under the same server: the floor before any of our code.

    .venv/bin/python loadtests/bench_idle.py [--idle 5000] [--servers uvicorn,uvicorn-wsproto,granian]
        [--compression]

Without DATABASE_URL/REDIS_URL it starts throwaway servers (devstack) and migrates them.
Prints one JSON document: per server, RSS before and after and KiB per socket.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.db.migrate import migrate
from devstack.servers import PostgresServer, RedisServer, free_port
from loadtests.bench_realtime import SECRET, bench_idle, serving

BIN = Path(sys.executable).parent
BARE = {
    "granian": ["granian", "--interface", "asgi", "--runtime-mode", "st", "--loop", "uvloop", "--no-log",
                "--backlog", "2048", "--host", "127.0.0.1", "--port", "{port}", "loadtests.bare_ws:app"],
    "uvicorn": ["uvicorn", "--loop", "uvloop", "--http", "httptools", "--ws", "websockets-sansio",
                "--no-access-log", "--log-level", "warning", "--backlog", "2048", "--host", "127.0.0.1",
                "--port", "{port}", "loadtests.bare_ws:app"],
    "uvicorn-wsproto": ["uvicorn", "--loop", "uvloop", "--http", "httptools", "--ws", "wsproto",
                        "--no-access-log", "--log-level", "warning", "--backlog", "2048", "--host", "127.0.0.1",
                        "--port", "{port}", "loadtests.bare_ws:app"],
}


def per_socket(result: dict[str, Any], count: int) -> dict[str, Any]:
    result["per_socket_kib"] = round((result["api_rss_mib"] - result["api_rss_before_mib"]) * 1024 / count, 1)
    return result


async def run(args: argparse.Namespace, env: dict[str, str]) -> dict[str, Any]:
    results: dict[str, Any] = {"date": time.strftime("%Y-%m-%d %H:%M"), "sockets": args.idle,
                               "load_before": os.getloadavg()[0]}
    for server in args.servers.split(","):
        port = free_port()
        server_env = {**env, "PORT": str(port), "GATEWAY_SERVER": server,
                      "REALTIME_COMPRESSION": "1" if args.compression else "0"}
        async with serving("gateway", server_env, port) as gateway:
            results[f"gateway_{server}"] = per_socket(await bench_idle(port, args.idle, gateway.pid), args.idle)
        if args.bare:
            bare_port = free_port()
            argv = [str(BIN / BARE[server][0]), *(a.replace("{port}", str(bare_port)) for a in BARE[server][1:])]
            if args.compression and server != "granian":
                argv.insert(-1, "--ws-per-message-deflate=true")
            elif server != "granian":
                argv.insert(-1, "--ws-per-message-deflate=false")
            async with serving("bare", {}, bare_port, argv=argv) as proc:
                results[f"bare_{server}"] = per_socket(await bench_idle(bare_port, args.idle, proc.pid), args.idle)
    results["load_after"] = os.getloadavg()[0]
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--idle", type=int, default=5000)
    parser.add_argument("--servers", default="uvicorn,uvicorn-wsproto,granian")
    parser.add_argument("--compression", action="store_true", help="REALTIME_COMPRESSION=1 (uvicorn only)")
    parser.add_argument("--no-bare", dest="bare", action="store_false", help="skip the bare-server floor")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="dw-idle-"))
    os.chmod(root, 0o755)
    pg = redis = None
    database_url, redis_url = os.environ.get("DATABASE_URL"), os.environ.get("REDIS_URL")
    if not database_url:
        pg = PostgresServer(root / "pg").start()
        database_url = pg.url
    if not redis_url:
        redis = RedisServer(root / "redis").start()
        redis_url = redis.url
    try:
        asyncio.run(migrate(database_url, progress=None))
        env = {
            "DATABASE_URL": database_url, "REDIS_URL": redis_url, "JWT_SECRET": SECRET, "DRAFTWIRE_ENV": "test",
            "HOST": "127.0.0.1", "LOG_LEVEL": "WARNING", "RATE_LIMIT_REQUESTS": "100000000",
            "REALTIME_MAX_CONNECTIONS": str(args.idle + 100), "REALTIME_MAX_PER_CLIENT": str(args.idle + 100),
        }
        print(json.dumps(uvloop.run(run(args, env)), indent=2))
    finally:
        if redis:
            redis.stop()
        if pg:
            pg.stop("immediate")


if __name__ == "__main__":
    main()
