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
import time
from pathlib import Path
from typing import Any

import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.auth import issue
from devstack.servers import free_port
from loadtests.bench_realtime import SECRET, RawWS, rss_of_group, serving, stores

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


class IdleClient(asyncio.Protocol):
    """One idle socket after its handshake: answers the server's keep-alive pings (as a browser
    does; uvicorn closes a socket whose pong is 20 s late) and notes ``caught_up``."""

    def __init__(self, transport: asyncio.Transport, caught_up: asyncio.Future[None], pending: bytes) -> None:
        self.transport, self.caught_up, self.buf = transport, caught_up, b""
        self.data_received(pending)

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data
        while len(buf) >= 2 and len(buf) >= 2 + (buf[1] & 0x7F):  # server frames here are < 126 bytes
            opcode, n = buf[0] & 0x0F, buf[1] & 0x7F
            payload, buf = buf[2:2 + n], buf[2 + n:]
            if opcode == 0x9:  # ping -> pong with the same payload, masked (all-zero mask)
                self.transport.write(bytes([0x8A, 0x80 | len(payload)]) + b"\0\0\0\0" + payload)
            elif b"caught_up" in payload and not self.caught_up.done():
                self.caught_up.set_result(None)
        self.buf = buf

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.caught_up.done():
            self.caught_up.set_exception(ConnectionError("closed before caught_up"))


async def bench_idle(port: int, count: int, pgid: int) -> dict[str, Any]:
    """``count`` authenticated sockets, one subscription each (100 channels), held open; RSS of
    the server's process group before and after."""
    loop = asyncio.get_running_loop()
    before = rss_of_group(pgid)
    caught: list[asyncio.Future[None]] = []
    transports = []
    clients = []  # kept: a StreamWriter that is collected closes its transport
    for i in range(count):
        ws = await RawWS.connect(port, issue(SECRET, f"idle-{i}", admin=True))
        ws.send({"op": "subscribe", "channel": f"job:idle-{i % 100}", "sinceSeq": 0})
        clients.append(ws)
        future: asyncio.Future[None] = loop.create_future()
        transport = ws.writer.transport
        transport.set_protocol(IdleClient(transport, future, ws.buf + bytes(ws.reader._buffer)))  # type: ignore[arg-type]
        caught.append(future)
        transports.append(transport)
    await asyncio.wait_for(asyncio.gather(*caught), 120)
    await asyncio.sleep(1)  # let the allocator settle before sampling RSS
    after = rss_of_group(pgid)
    for transport in transports:
        transport.close()
    return {"sockets": count, "api_rss_before_mib": before, "api_rss_mib": after}


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
    with stores() as (database_url, redis_url):
        env = {
            "DATABASE_URL": database_url, "REDIS_URL": redis_url, "JWT_SECRET": SECRET, "DRAFTWIRE_ENV": "test",
            "HOST": "127.0.0.1", "LOG_LEVEL": "WARNING", "RATE_LIMIT_REQUESTS": "100000000",
            "REALTIME_MAX_CONNECTIONS": str(args.idle + 100), "REALTIME_MAX_PER_CLIENT": str(args.idle + 100),
        }
        print(json.dumps(uvloop.run(run(args, env)), indent=2))

if __name__ == "__main__":
    main()
