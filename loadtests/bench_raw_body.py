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
from typing import Any

from devstack.processes import cpu_seconds
from devstack.servers import free_port, terminate, wait_for_port
from devstack.stats import percentile

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
    return times, receives


def measure(stop_at_length: bool, requests: int, idle_requests: int) -> dict[str, Any]:
    port = free_port()
    env = {**os.environ, "BENCH_STOP_AT_LENGTH": "1" if stop_at_length else "0"}
    server = subprocess.Popen(
        [sys.executable, "-m", "granian", "--interface", "asgi", "--workers", "1", "--loop", "uvloop",
         "--runtime-mode", "st", "--no-log", "--port", str(port), "loadtests.bench_raw_body:app"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, 30, server)
        _round_trips(port, 200, 0)  # warm
        cpu = cpu_seconds(server.pid)  # Granian's worker is a child: counted with its descendants
        busy, receives = _round_trips(port, requests, 0)
        cpu_us = (cpu_seconds(server.pid) - cpu) / requests * 1e6
        idle, _ = _round_trips(port, idle_requests, 0.01)
    finally:
        terminate(server, 30)

    def pcts(values: list[float]) -> dict[str, int]:
        return {"p50": round(percentile(values, 50)), "p95": round(percentile(values, 95))}

    return {"receivesPerRequest": receives, "busyUs": pcts(busy), "idleUs": pcts(idle),
            "serverCpuUsPerRequest": round(cpu_us)}


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
