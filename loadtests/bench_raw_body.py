"""What a request costs under Granian when the app reads its body to the ``more_body: False``
message, against stopping once ``Content-Length`` bytes are in (what ``app.http.raw.read_body``
does): Granian answers every ``receive()`` through its Rust runtime and a blocking thread, and it
sends a small body as a chunk with ``more_body: True`` followed by an empty end message.

    .venv/bin/python -m loadtests.bench_raw_body [--requests 3000] [--idle-requests 300]

For each way of reading, one Granian (the API's own settings: one worker, uvloop, single-threaded
runtime) serves a bare ASGI app; one keep-alive client socket posts a 48-byte JSON body, one
request at a time: back to back ("busy"), then with 10 ms between requests ("idle", where every
hop wakes a sleeping thread). Reports the round trip's p50/p95 in microseconds, the server's CPU
per request, and how many ``receive()`` calls a request took. Prints one JSON document.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

BODY = b'{"type":"bench.tick","data":{"sentAt":1,"i":2}}'
REQUEST = (b"POST /x HTTP/1.1\r\nhost: bench\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
           % (len(BODY), BODY))


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """A bare ASGI app: read the body (to the end, or to Content-Length), answer 201."""
    if scope["type"] != "http":
        return
    stop_at_length = os.environ.get("BENCH_STOP_AT_LENGTH") == "1"
    expected = int(dict(scope["headers"]).get(b"content-length", b"-1"))
    calls, size = 0, 0
    while True:
        message = await receive()
        calls += 1
        size += len(message.get("body", b""))
        if (stop_at_length and size == expected) or not message.get("more_body", False):
            break
    await send({"type": "http.response.start", "status": 201, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": b'{"receives":%d}' % calls})


def _round_trips(port: int, requests: int, gap: float) -> tuple[list[float], int]:
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        times: list[float] = []
        answer = b""
        for _ in range(requests):
            start = time.perf_counter()
            sock.sendall(REQUEST)
            answer = b""
            while not answer.endswith(b"}"):
                chunk = sock.recv(4096)
                if not chunk:
                    raise SystemExit("the server closed the keep-alive connection")
                answer += chunk
            times.append((time.perf_counter() - start) * 1e6)
            if gap:
                time.sleep(gap)
    receives = int(answer.rsplit(b":", 1)[1].rstrip(b"}"))
    return sorted(times), receives


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of ``pid`` and its descendants (Granian's worker is a child)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    own = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    children = " ".join(path.read_text() for path in Path(f"/proc/{pid}/task").glob("*/children")).split()
    return own + sum(_cpu_s(int(child)) for child in children)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def measure(stop_at_length: bool, requests: int, idle_requests: int) -> dict[str, Any]:
    port = _free_port()
    env = {**os.environ, "BENCH_STOP_AT_LENGTH": "1" if stop_at_length else "0"}
    server = subprocess.Popen(
        [sys.executable, "-m", "granian", "--interface", "asgi", "--workers", "1", "--loop", "uvloop",
         "--runtime-mode", "st", "--no-log", "--port", str(port), "loadtests.bench_raw_body:app"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise SystemExit("granian did not start") from None
                time.sleep(0.1)
        _round_trips(port, 200, 0)  # warm
        cpu = _cpu_s(server.pid)
        busy, receives = _round_trips(port, requests, 0)
        cpu_us = (_cpu_s(server.pid) - cpu) / requests * 1e6
        idle, _ = _round_trips(port, idle_requests, 0.01)
    finally:
        server.terminate()
        server.wait(timeout=30)

    def pct(values: list[float], q: float) -> int:
        return round(values[int(q * (len(values) - 1))])

    return {"receivesPerRequest": receives, "busyUs": {"p50": pct(busy, 0.5), "p95": pct(busy, 0.95)},
            "idleUs": {"p50": pct(idle, 0.5), "p95": pct(idle, 0.95)}, "serverCpuUsPerRequest": round(cpu_us)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--idle-requests", type=int, default=300)
    args = parser.parse_args()
    result = {}
    for label, stop in (("toTheEndMessage", False), ("toContentLength", True)):
        print(f"measuring: read {label} ...", file=sys.stderr, flush=True)
        result[label] = measure(stop, args.requests, args.idle_requests)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
