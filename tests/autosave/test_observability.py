"""Logs, metrics and traces of the autosave path."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import psycopg
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from tests.autosave.conftest import auth, client, eventually, save_body
from tests.support.processes import TEST_SECRET, ServiceProcess

REQUIRED = {"timestamp", "level", "msg"}


async def test_logs_carry_contract_fields_and_no_secrets(
    api: ServiceProcess, worker: ServiceProcess, token: Callable[..., str], owner_conn: psycopg.AsyncConnection
) -> None:
    """Every log line is JSON with timestamp/level/msg; request lines carry route, status and
    latency_ms with a trace id; the token, the secret, the title and payload never appear."""
    marker = f"SECRET-PAYLOAD-{uuid.uuid4().hex}"
    title = f"TITLE-{uuid.uuid4().hex}"
    session = token()
    async with client(api.url) as http:
        saved = (await http.post("/api/autosave", json=save_body(title, {"body": marker}), headers=auth(session))).json()
        await http.post("/api/autosave", content=b"{oops", headers=auth(session))
    await eventually(
        lambda: asyncio.to_thread(worker.logs),
        lambda lines: any(line.get("msg") == "autosave_flushed" for line in lines),
    )
    api_lines, worker_lines = api.logs(), worker.logs()
    for line in api_lines + worker_lines:
        assert line.keys() >= REQUIRED, line
    requests = [line for line in api_lines if line["msg"] == "request" and line["route"] == "/api/autosave"]
    assert {400, 202} <= {line["status"] for line in requests}
    for line in requests:
        assert isinstance(line["latency_ms"], float) and len(line["trace_id"]) == 32 and "span_id" in line
    enqueued = [line for line in api_lines if line["msg"] == "autosave_enqueued" and line["job_id"].endswith(saved["draftId"])]
    assert enqueued and enqueued[0]["queue"] == "draft-autosave"
    everything = api.log_path.read_text() + worker.log_path.read_text()
    for secret in (marker, title, session, TEST_SECRET):
        assert secret not in everything


async def test_metrics_expose_contract_names_and_exemplars(
    api: ServiceProcess, worker: ServiceProcess, token: Callable[..., str]
) -> None:
    """/metrics has the contract's HTTP and autosave metrics labelled by route template, and
    OpenMetrics scrapes carry trace_id exemplars."""
    async with client(api.url) as http:
        saved = (await http.post("/api/autosave", json=save_body(), headers=auth(token()))).json()
        await http.get(f"/api/drafts/{saved['draftId']}", headers=auth(token()))
        text = (await http.get("/metrics")).text
        openmetrics = (await http.get("/metrics", headers={"Accept": "application/openmetrics-text"})).text
    assert 'http_requests_total{app_name="draftwire",method="POST",path="/api/autosave",status_code="202"}' in text
    assert 'path="/api/drafts/{draft_id}"' in text and saved["draftId"] not in text
    for name in ("http_request_duration_seconds_bucket", "autosave_requests_total", "autosave_payload_bytes_bucket",
                 "db_query_duration_seconds_bucket", "rate_limit_events_total", "queue_depth", "redis_up", "database_up"):
        assert name in text, name
    assert "ws" not in {line.split('method="')[1].split('"')[0] for line in text.splitlines() if 'method="' in line}
    exemplars = [line for line in openmetrics.splitlines() if line.startswith("http_request_duration_seconds_bucket") and "# {" in line]
    assert exemplars and 'trace_id="' in exemplars[0]
    worker_text = httpx.get(f"{worker.url}/metrics").text
    for name in ("autosave_flush_batch_size_bucket", "autosave_flush_duration_seconds_bucket", "autosave_db_writes_total",
                 "autosave_saves_coalesced_total", "jobs_processed_total", "job_duration_seconds_bucket",
                 "job_wait_seconds_bucket", "db_query_duration_seconds_bucket", "queue_depth"):
        assert name in worker_text, name


async def test_one_trace_from_request_to_websocket_delivery(
    spans: InMemorySpanExporter,
    base_env: dict[str, str],
    fresh_redis_url: Callable[[], str],
    token: Callable[..., str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One trace holds the request span, the enqueue, the worker's job span, the flush batch, the
    Postgres write and, for a WebSocket subscribed to ``draft:<id>``, the ``realtime deliver``
    span of the ``draft.saved`` event (API, gateway and worker run in this process with the
    in-memory exporter)."""
    from litestar.testing import AsyncTestClient

    from app import config
    from app.platform import Platform
    from app.roles.api import create_app
    from app.roles.worker import build_workers, worker_parts

    redis_url = fresh_redis_url()  # a queue of its own
    for key, value in {**base_env, "REDIS_URL": redis_url, "AUTOSAVE_FLUSH_DELAY": "100ms"}.items():
        monkeypatch.setenv(key, value)
    settings = config.load()
    app = create_app(settings)
    worker = Platform.create(settings)
    parts = worker_parts(worker)
    services = [service for part in parts for service in part.services]
    session = token()

    def finished(name: str, **attributes: Any) -> list[Any]:
        return [s for s in spans.get_finished_spans() if s.name == name
                and all(s.attributes and s.attributes.get(k) == v for k, v in attributes.items())]

    def request_span(trace_ids_before: set[int]) -> Any:
        found = [s for s in spans.get_finished_spans() if s.kind == SpanKind.SERVER and "autosave" in s.name
                 and s.context.trace_id not in trace_ids_before]
        assert len(found) == 1, [s.name for s in found]
        return found[0]

    async with AsyncTestClient(app) as http:
        await worker.open()
        workers = build_workers(worker, parts)
        for service in services:
            service.start()
        running = [asyncio.create_task(w.start()) for w in workers]
        try:
            response = await http.post("/api/autosave", json=save_body(), headers=auth(session))
            assert response.status_code == 202
            draft_id = response.json()["draftId"]
            first_request = request_span(set())
            await eventually(lambda: asyncio.sleep(0, finished("job draft-autosave")), bool)

            # The test session's receive blocks its thread: run it off this loop (the worker's).
            with await http.websocket_connect(f"/ws?token={session}") as ws:
                async def frame(op: str, timeout: float = 20) -> dict[str, Any]:
                    """The next frame with this ``op`` (bounded)."""
                    while True:
                        got = json.loads(await asyncio.to_thread(ws.receive_text, timeout=timeout))
                        if got.get("op") == op:
                            return got

                channel = f"draft:{draft_id}"
                ws.send_text(json.dumps({"op": "subscribe", "channel": channel, "sinceSeq": 0}))
                await frame("caught_up")  # live from here: the next event is an announcement
                response = await http.post("/api/autosave", headers=auth(session),
                                           json=save_body(draftId=draft_id))
                assert response.json()["version"] == 2
                second_request = request_span({first_request.context.trace_id})
                live = await frame("event")
                assert live["channel"] == channel and live["data"] == {"version": 2}
                delivered = await eventually(
                    lambda: asyncio.sleep(0, finished("realtime deliver", **{"draftwire.event.seq": live["seq"]})),
                    bool)
        finally:
            for w in workers:
                w.event.set()
            await asyncio.gather(*running, return_exceptions=True)
            for service in services:
                await service.stop()
            await worker.close()

    same_trace = [s for s in spans.get_finished_spans() if s.context.trace_id == first_request.context.trace_id]
    names = {s.name for s in same_trace}
    assert {"autosave enqueue", "job draft-autosave", "autosave flush batch"} <= names, names
    sql = [s for s in same_trace if s.attributes and s.attributes.get("db.system") == "postgresql" and s.name != "autosave flush batch"]
    assert any("spec_drafts" in str(s.attributes.get("db.statement", "")) for s in sql), [s.name for s in sql]
    assert any(s.attributes and s.attributes.get("db.system") == "redis" for s in same_trace)

    assert len(delivered) == 1 and delivered[0].kind == SpanKind.CONSUMER
    deliver = delivered[0]
    assert deliver.context.trace_id == second_request.context.trace_id, "delivery is not in the request's trace"
    by_id = {s.context.span_id: s for s in spans.get_finished_spans()
             if s.context.trace_id == second_request.context.trace_id}
    chain, parent = [], deliver.parent
    while parent is not None and parent.span_id in by_id:
        chain.append(by_id[parent.span_id])
        parent = by_id[parent.span_id].parent
    # deliver <- flush batch <- job <- enqueue <- the POST itself: nothing in between is lost.
    assert [s.name for s in chain] == ["autosave flush batch", "job draft-autosave", "autosave enqueue",
                                       second_request.name]
    assert chain[-1].context.span_id == second_request.context.span_id
    assert deliver.attributes["draftwire.channel.kind"] == "draft"
