"""A tiny Alertmanager webhook receiver: logs each notification as one JSON line and keeps them.

The compose stack runs it as ``alert-sink`` (the ``url`` of both receivers in
``compose/alertmanager/alertmanager.yml``) so pages and tickets are visible with
``docker compose logs alert-sink`` where no PagerDuty or chat is wired. Tests run it on a
loopback port as the local receiver. Standard library only.

POST /<anything>  store the JSON body with its path, answer 200
GET  /received    every stored notification, oldest first, as a JSON list
GET  /healthz     {"status": "ok"}
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MAX_KEPT = 1000
"""Notifications kept in memory; older ones are dropped (the log line stays)."""


class Sink(ThreadingHTTPServer):
    """HTTP server that remembers what Alertmanager posted to it."""

    def __init__(self, address: tuple[str, int]) -> None:
        super().__init__(address, _Handler)
        self.lock = threading.Lock()
        self.received: list[dict[str, Any]] = []

    def keep(self, path: str, body: dict[str, Any]) -> None:
        """Store one notification and log a one-line summary of it."""
        entry = {"path": path, "body": body}
        with self.lock:
            self.received.append(entry)
            del self.received[:-MAX_KEPT]
        summary = {
            "msg": "alert_notification",
            "path": path,
            "receiver": body.get("receiver"),
            "status": body.get("status"),
            "alerts": [a.get("labels", {}).get("alertname") for a in body.get("alerts", [])],
        }
        print(json.dumps(summary), flush=True)

    def snapshot(self) -> list[dict[str, Any]]:
        """A copy of everything stored so far."""
        with self.lock:
            return list(self.received)


class _Handler(BaseHTTPRequestHandler):
    server: Sink

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            self._reply(400, {"error": "bad_json", "detail": "The body is not JSON."})
            return
        self.server.keep(self.path, body)
        self._reply(200, {"status": "ok"})

    def do_GET(self) -> None:
        if self.path == "/received":
            self._reply(200, self.server.snapshot())
        elif self.path == "/healthz":
            self._reply(200, {"status": "ok"})
        else:
            self._reply(404, {"error": "not_found", "detail": "Try /received or /healthz."})

    def _reply(self, status: int, payload: Any) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: keep() already logs one line per notification."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="0.0.0.0")  # noqa: S104 - listens inside its container
    parser.add_argument("--port", type=int, default=9095)
    args = parser.parse_args(argv)
    server = Sink((args.host, args.port))
    print(json.dumps({"msg": "alert_sink_listening", "port": server.server_address[1]}), flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
