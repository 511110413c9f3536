"""Secrets and personal data stay out of telemetry (issue 16, point 7).

Runs last in this folder (hence the name): it reads every log line the suite's processes wrote
(tokens forged and real, JWT secrets including the rotation's, the database password, payload
and title markers must not appear), every metric label they expose (no ids, no user names),
and every span attribute of an in-process app driven with the same kinds of input."""

from __future__ import annotations

import contextlib
import re
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client.parser import text_string_to_metric_families

from tests.security.conftest import DB_PASSWORD, ISSUED, PROCESSES, SECRETS, bearer, with_password
from tests.security.forged import forged_tokens
from tests.support.processes import TEST_SECRET, ServiceProcess

MARKERS = ["payload-marker-5b1e", "audit-data-marker", "span-marker-77c2"]
ID_LIKE = re.compile(r"[0-9a-f]{8}-?[0-9a-f]{4}|alice|bob|mallory|user-|fuzz-|ops-|job:|draft:", re.I)


def needles() -> list[str]:
    forged = [t for t in forged_tokens().values() if len(t) > 20]
    signatures = [t.rsplit(".", 1)[-1] for t in ISSUED if t.rsplit(".", 1)[-1]]
    return sorted({*ISSUED, *signatures, *forged, *SECRETS, DB_PASSWORD, *MARKERS} - {""})


def test_no_secret_or_payload_in_any_log_line(sec_api: ServiceProcess) -> None:
    """Every line of every process this suite started: none holds a token (or a signature), a
    secret, the database password or a payload/title marker."""
    request = urllib.request.Request(  # noqa: S310 - loopback
        f"{sec_api.url}/api/drafts?token={ISSUED[0] if ISSUED else 'x'}",
                                     headers={"Authorization": f"Bearer {forged_tokens()['wrong_key']}"})
    with contextlib.suppress(urllib.error.HTTPError):
        urllib.request.urlopen(request, timeout=5)  # noqa: S310 - loopback; a 401 that must log cleanly
    found, lines = [], 0
    for proc in PROCESSES:
        text = proc.log_path.read_text(errors="replace")
        lines += text.count("\n")
        found += [(proc.log_path.name, needle[:12]) for needle in needles() if needle in text]
    assert lines > 0
    assert found == []


def test_metric_labels_hold_no_ids_or_names(sec_api: ServiceProcess) -> None:
    """Every label value every still-running process exposes on /metrics: route templates and
    fixed words, never an id, a channel, a user name or a secret."""
    checked = 0
    for proc in PROCESSES:
        if not proc.running():
            continue
        with urllib.request.urlopen(f"{proc.url}/metrics", timeout=5) as answer:  # noqa: S310 - loopback
            text = answer.read().decode()
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                for name, value in sample.labels.items():
                    if name in ("le", "quantile"):
                        continue
                    checked += 1
                    shown = value.replace("{draft_id}", "").replace("{job_id}", "")
                    assert not ID_LIKE.search(shown), (family.name, name, value)
                    assert not any(n in value for n in needles()), (family.name, name)
    assert checked > 50


async def test_no_secret_or_payload_in_any_span_attribute(
    spans: InMemorySpanExporter, base_env: dict[str, str], fresh_redis_url: Callable[[], str],
    mint: Callable[..., str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An in-process API (the SDK's in-memory exporter) sent tokens in headers, cookies and URLs,
    a payload marker and a database URL with a password: no span attribute holds any of them."""
    from litestar.testing import AsyncTestClient

    from app import config
    from app.roles.api import create_app

    env = {**base_env, "REDIS_URL": fresh_redis_url(), "DATABASE_URL": with_password(base_env["DATABASE_URL"])}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    token = mint("span-user")
    admin = mint("span-admin", admin=True)
    async with AsyncTestClient(create_app(config.load())) as http:
        saved = await http.post("/api/autosave", json={"title": "span-marker-77c2", "payload": {"m": "span-marker-77c2"}},
                                headers=bearer(token))
        assert saved.status_code == 202
        draft = saved.json()["draftId"]
        assert (await http.get(f"/api/drafts/{draft}", headers={"Cookie": f"session={token}"})).status_code == 200
        assert (await http.get("/api/drafts", params={"token": admin})).status_code == 401
        assert (await http.get(f"/api/drafts?limit=5&token={TEST_SECRET}", headers=bearer(token))).status_code == 200
        await http.post("/api/admin/channels/job:span/events", json={"type": "x.y", "data": {"m": "span-marker-77c2"}},
                        headers=bearer(admin))
    finished = spans.get_finished_spans()
    assert len(finished) > 5
    leaks: list[Any] = []
    for span in finished:
        for key, value in (span.attributes or {}).items():
            text = str(value)
            leaks += [(span.name, key, n[:12]) for n in needles() if n in text]
        for event in span.events:
            leaks += [(span.name, event.name, n[:12]) for n in needles() if n in str(event.attributes)]
    assert leaks == []
