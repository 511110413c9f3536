"""The worker's own tiny HTTP server: ``GET /healthz`` and ``GET /metrics`` on
``WORKER_METRICS_PORT``, nothing else (a worker serves no API)."""

from __future__ import annotations

import asyncio

from app.health import metrics_response

_NOT_GET = b'{"error":"method_not_allowed","detail":"Only GET is served here."}'
_NOT_FOUND = b'{"error":"not_found","detail":"Try /healthz or /metrics."}'


async def serve_metrics(port: int) -> asyncio.Server:
    """A minimal HTTP/1.1 server: GET /healthz and GET /metrics, nothing else."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            request_line, *header_lines = head.decode("latin-1").split("\r\n")
            parts = request_line.split(" ")
            path = parts[1].split("?", 1)[0] if len(parts) > 1 else "/"
            headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in header_lines if h)}
            if parts[0] != "GET":
                status, body, ctype = "405 Method Not Allowed", _NOT_GET, "application/json"
            elif path == "/healthz":
                status, body, ctype = "200 OK", b'{"status":"ok"}', "application/json"
            elif path == "/metrics":
                body, ctype = metrics_response(headers.get("accept", ""))
                status = "200 OK"
            else:
                status, body, ctype = "404 Not Found", _NOT_FOUND, "application/json"
            writer.write(
                f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
                "Connection: close\r\n\r\n".encode()
                + body
            )
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()

    return await asyncio.start_server(handle, "0.0.0.0", port)  # noqa: S104
