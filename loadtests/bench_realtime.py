"""Realtime gateway benchmark: catch-up, broadcast and idle-socket memory, against a real
``draftwire api`` (Granian), Postgres and Redis on this machine.

    .venv/bin/python loadtests/bench_realtime.py [--events 10000] [--subscribers 200] [--idle 5000]

Without DATABASE_URL/REDIS_URL it starts throwaway servers (devstack) and migrates them.
The driver speaks WebSocket with a tiny raw client (during the broadcast, an asyncio.Protocol
scanning each chunk with one regex; no per-frame library overhead) and publishes over raw
keep-alive HTTP, so that at 40,000 frames/s the measurement is the server's latency, not the
driver's. The idle-socket phase is repeated against a bare ASGI app (loadtests/bare_ws.py) on the
same Granian settings, to show what the server alone costs per socket.
Prints one JSON document of results (and CPU seconds used by the API and by the driver).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import re
import resource
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.auth import issue
from app.db.migrate import migrate
from devstack.processes import ServiceProcess
from devstack.servers import PostgresServer, RedisServer, free_port
from devstack.stats import percentile
from loadtests.rawhttp import Connection, post_json

ROOT = Path(__file__).resolve().parents[1]
EVENT_RE = re.compile(rb'"seq":(\d+),"type":"bench\.tick","data":\{"t": ?([\d.]+)\}')
"""One broadcast event as it appears in the stream (live `event` or an element of `events`)."""
PUBLISH_CONNECTIONS = 20
SECRET = "bench-secret-0123456789abcdef-0123456789"  # noqa: S105 - throwaway


class EventReceiver(asyncio.Protocol):
    """The broadcast phase's reader: a protocol fed each chunk as it arrives (no coroutine per
    read). Server frames are unmasked, so payloads are plain in the byte stream: one regex pass
    per chunk finds every event, live or backfilled inside an ``events`` frame, without framing
    or decoding each one. The tail after the last match waits for the next chunk."""

    def __init__(self, seen: list[int], latencies: list[float], expected: int, done: asyncio.Future[None],
                 pending: bytes) -> None:
        self.seen, self.latencies, self.expected, self.done, self.buf = seen, latencies, expected, done, pending

    def data_received(self, data: bytes) -> None:
        now = time.time()
        buf, end = self.buf + data, 0
        for match in EVENT_RE.finditer(buf):
            self.seen.append(int(match[1]))
            self.latencies.append((now - float(match[2])) * 1000)
            end = match.end()
        self.buf = buf[end:]
        if len(self.seen) >= self.expected and not self.done.done():
            self.done.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_exception(ConnectionError("closed before every event arrived"))


class RawWS:
    """Just enough RFC 6455 for a benchmark client: text frames, no fragmentation."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer, self.buf = reader, writer, b""

    @classmethod
    async def connect(cls, port: int, token: str) -> RawWS:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            f"GET /ws?token={token} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        head = await reader.readuntil(b"\r\n\r\n")
        if b" 101 " not in head.split(b"\r\n", 1)[0]:
            raise RuntimeError(head[:80])
        return cls(reader, writer)

    def send(self, obj: dict[str, Any]) -> None:
        payload = json.dumps(obj).encode()
        n = len(payload)
        mask = os.urandom(4)
        masked = (int.from_bytes(payload, "big") ^ int.from_bytes((mask * (n // 4 + 1))[:n], "big")).to_bytes(n, "big")
        header = bytes([0x81, 0x80 | n]) if n < 126 else bytes([0x81, 0xFE]) + n.to_bytes(2, "big")
        self.writer.write(header + mask + masked)

    async def frames(self) -> tuple[float, list[bytes]]:
        """The text payloads of every complete frame in the next chunk, with its arrival time."""
        while True:
            data = await self.reader.read(262144)
            if not data:
                raise ConnectionError("closed")
            now = time.time()
            self.buf += data
            out, buf, i = [], self.buf, 0
            while len(buf) - i >= 2:
                n, h = buf[i + 1] & 0x7F, 2
                if n == 126:
                    if len(buf) - i < 4:
                        break
                    n, h = int.from_bytes(buf[i + 2:i + 4], "big"), 4
                elif n == 127:
                    if len(buf) - i < 10:
                        break
                    n, h = int.from_bytes(buf[i + 2:i + 10], "big"), 10
                if len(buf) - i < h + n:
                    break
                if buf[i] & 0x0F == 0x8:
                    raise ConnectionError("close frame")
                out.append(buf[i + h:i + h + n])
                i += h + n
            self.buf = buf[i:]
            if out:
                return now, out

    async def until(self, op: str) -> dict[str, Any]:
        while True:
            _, frames = await self.frames()
            for raw in frames:
                frame = json.loads(raw)
                if frame.get("op") == op:
                    return frame

    def close(self) -> None:
        self.writer.close()


def pct(values: list[float], p: float) -> float:
    """``p`` as a fraction (0.95); devstack's one percentile convention, rounded for the report."""
    return round(percentile(values, p * 100), 2)


def _group_stat(pgid: int) -> tuple[float, float]:
    """(utime+stime seconds, RSS MiB) summed over a process group (Granian's main and worker)."""
    ticks = rss = 0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(stat[2]) == pgid:
                ticks += int(stat[11]) + int(stat[12])
                rss += int(stat[21]) * os.sysconf("SC_PAGE_SIZE")
    return ticks / os.sysconf("SC_CLK_TCK"), round(rss / 2**20, 1)


def cpu_of_group(pgid: int) -> float:
    return _group_stat(pgid)[0]


def rss_of_group(pgid: int) -> float:
    return _group_stat(pgid)[1]


def driver_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def publish(http: httpx.AsyncClient, base: str, admin: str, channel: str, data: dict[str, Any]) -> int:
    r = await http.post(f"{base}/api/admin/channels/{channel}/events", json={"type": "bench.tick", "data": data},
                        headers={"authorization": f"Bearer {admin}"})
    r.raise_for_status()
    return int(r.json()["seq"])


async def bench_catchup(port: int, base: str, admin: str, rounds: int) -> dict[str, Any]:
    """Subscribe -> caught_up for a channel holding 120 events, ``rounds`` times."""
    channel = f"job:catchup-{uuid.uuid4().hex[:8]}"
    async with httpx.AsyncClient() as http:
        for i in range(120):
            await publish(http, base, admin, channel, {"i": i, "note": "x" * 100})
    ws = await RawWS.connect(port, admin)
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        ws.send({"op": "subscribe", "channel": channel, "sinceSeq": 0})
        caught = await ws.until("caught_up")
        samples.append((time.perf_counter() - start) * 1000)
        assert caught["replayed"] == 120
        ws.send({"op": "unsubscribe", "channel": channel})
    ws.close()
    return {"rounds": rounds, "p50_ms": pct(samples, 0.5), "p95_ms": pct(samples, 0.95), "max_ms": pct(samples, 1)}


async def bench_broadcast(port: int, base: str, admin: str, subscribers: int, events: int, rate: int,
                          api_pgid: int) -> dict[str, Any]:
    channel = f"job:broadcast-{uuid.uuid4().hex[:8]}"
    sockets = [await RawWS.connect(port, admin) for _ in range(subscribers)]
    for ws in sockets:
        ws.send({"op": "subscribe", "channel": channel, "sinceSeq": 0})
        await ws.until("caught_up")
    latencies: list[float] = []
    seen: list[list[int]] = [[] for _ in sockets]

    loop = asyncio.get_running_loop()
    readers = []
    for idx, ws in enumerate(sockets):
        receiver = EventReceiver(seen[idx], latencies, events, loop.create_future(), ws.buf)
        ws.writer.transport.set_protocol(receiver)  # from here on, bytes go straight to the receiver
        readers.append(receiver.done)
    cpu0, dcpu0, t0 = cpu_of_group(api_pgid), driver_cpu(), time.monotonic()
    # The publisher speaks raw keep-alive HTTP too (httpx costs milliseconds of CPU a request).
    idle_conns: asyncio.Queue[Connection] = asyncio.Queue()
    for _ in range(PUBLISH_CONNECTIONS):
        idle_conns.put_nowait(await Connection("127.0.0.1", port).open())
    path, auth = f"/api/admin/channels/{channel}/events", {"authorization": f"Bearer {admin}"}
    failures: list[int] = []

    async def publish_one() -> None:
        conn = await idle_conns.get()
        body = b'{"type":"bench.tick","data":{"t":%.6f}}' % time.time()
        status, _ = await conn.request(post_json(path, body, auth))
        idle_conns.put_nowait(conn)
        if status != 201:
            failures.append(status)

    pending: set[asyncio.Task[None]] = set()
    for i in range(events):
        delay = t0 + i / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        pending.add(asyncio.create_task(publish_one()))
        if len(pending) > 50:
            _, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
    await asyncio.gather(*pending)
    while not idle_conns.empty():
        idle_conns.get_nowait().close()
    if failures:
        raise RuntimeError(f"{len(failures)} publishes failed, e.g. HTTP {failures[0]}")
    with contextlib.suppress(TimeoutError, ConnectionError):
        await asyncio.wait_for(asyncio.gather(*readers), 30)
    elapsed = time.monotonic() - t0
    drops = sum(events - len(set(s)) for s in seen)
    dups = sum(len(s) - len(set(s)) for s in seen)
    out_of_order = sum(1 for s in seen if s != sorted(s))
    for ws in sockets:
        ws.close()
    return {
        "subscribers": subscribers, "events": events, "rate_per_s": rate, "seconds": round(elapsed, 1),
        "deliveries": len(latencies), "p50_ms": pct(latencies, 0.5), "p95_ms": pct(latencies, 0.95),
        "p99_ms": pct(latencies, 0.99), "drops": drops, "duplicates": dups, "out_of_order_sockets": out_of_order,
        "api_cpu_s": round(cpu_of_group(api_pgid) - cpu0, 1), "driver_cpu_s": round(driver_cpu() - dcpu0, 1),
    }


async def bench_idle(port: int, count: int, api_pgid: int) -> dict[str, Any]:
    before = rss_of_group(api_pgid)
    sockets = []
    for i in range(count):
        ws = await RawWS.connect(port, issue(SECRET, f"idle-{i}", admin=True))
        ws.send({"op": "subscribe", "channel": f"job:idle-{i % 100}", "sinceSeq": 0})
        sockets.append(ws)
    for ws in sockets:
        await ws.until("caught_up")
    await asyncio.sleep(1)  # let allocator settle before sampling RSS
    after = rss_of_group(api_pgid)
    for ws in sockets:
        ws.close()
    return {"sockets": count, "api_rss_before_mib": before, "api_rss_mib": after}


async def server_metrics(base: str) -> dict[str, float]:
    """The API's own view: sequence gaps, slow-consumer closes, broadcast latency histogram."""
    from prometheus_client.parser import text_string_to_metric_families

    async with httpx.AsyncClient() as http:
        text = (await http.get(f"{base}/metrics")).text
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in ("realtime_sequence_gaps_total", "realtime_broadcast_latency_seconds_count",
                               "realtime_broadcast_latency_seconds_sum", "realtime_connections_rejected_total"):
                key = sample.name + "".join(f"{{{v}}}" for v in sample.labels.values())
                out[key] = out.get(key, 0) + sample.value
    return out


@contextlib.asynccontextmanager
async def serving(kind: str, env: dict[str, str], port: int, argv: list[str] | None = None) -> AsyncIterator[ServiceProcess]:
    """A server process (its own process group) once it answers ``/healthz``; stopped after."""
    log = Path(tempfile.gettempdir()) / f"bench-{kind}-{port}.log"
    proc = await asyncio.to_thread(ServiceProcess(kind, env, log, port=port, argv=argv).start)
    try:
        yield proc
    finally:
        await asyncio.to_thread(proc.stop)


async def run(args: argparse.Namespace, env: dict[str, str], port: int) -> dict[str, Any]:
    base = f"http://127.0.0.1:{port}"
    results: dict[str, Any] = {"date": time.strftime("%Y-%m-%d"), "cpus": os.cpu_count()}
    async with serving("api", env, port) as api:
        admin = issue(SECRET, "bench-admin", admin=True, ttl_seconds=3600)
        results["catchup_120"] = await bench_catchup(port, base, admin, args.catchup_rounds)
        results["broadcast"] = await bench_broadcast(port, base, admin, args.subscribers, args.events, args.rate, api.pid)
        results["server"] = await server_metrics(base)
        results["idle"] = await bench_idle(port, args.idle, api.pid)
    if args.idle:
        # The same idle sockets on a bare ASGI app under the same Granian settings: what the
        # server costs per socket before any of our code runs.
        bare_port = free_port()
        bare = [str(Path(sys.executable).with_name("granian")), "--interface", "asgi", "--runtime-mode", "st",
                "--loop", "uvloop", "--no-log", "--host", "127.0.0.1", "--port", str(bare_port),
                "--backlog", "2048", "loadtests.bare_ws:app"]
        async with serving("bare", {}, bare_port, argv=bare) as proc:
            results["idle_bare_granian"] = await bench_idle(bare_port, args.idle, proc.pid)
    for key in ("idle", "idle_bare_granian"):
        if key in results and args.idle:
            idle = results[key]
            idle["per_socket_kib"] = round((idle["api_rss_mib"] - idle["api_rss_before_mib"]) * 1024 / args.idle, 1)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--catchup-rounds", type=int, default=300)
    parser.add_argument("--subscribers", type=int, default=200)
    parser.add_argument("--events", type=int, default=10000)
    parser.add_argument("--rate", type=int, default=200)
    parser.add_argument("--idle", type=int, default=5000)
    args = parser.parse_args()
    with stores() as (database_url, redis_url):
        port = free_port()
        env = {
            "DATABASE_URL": database_url, "REDIS_URL": redis_url, "JWT_SECRET": SECRET, "DRAFTWIRE_ENV": "test",
            "PORT": str(port), "HOST": "127.0.0.1", "LOG_LEVEL": "WARNING", "RATE_LIMIT_REQUESTS": "100000000",
            "REALTIME_MAX_CONNECTIONS": str(args.idle + args.subscribers + 100),
            "REALTIME_MAX_PER_CLIENT": str(args.idle + args.subscribers + 100),
        }
        results = uvloop.run(run(args, env, port))
        print(json.dumps(results, indent=2))


@contextlib.contextmanager
def stores() -> Iterator[tuple[str, str]]:
    """(DATABASE_URL, REDIS_URL), migrated: those of the environment, or throwaway servers
    (devstack) stopped afterwards."""
    root = Path(tempfile.mkdtemp(prefix="dw-bench-"))
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
        yield database_url, redis_url
    finally:
        if redis:
            redis.stop()
        if pg:
            pg.stop("immediate")

if __name__ == "__main__":
    main()
