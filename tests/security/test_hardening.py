"""HTTP hardening (issue 16, points 1 and 8): security headers on every response, CORS off unless
a setting allows an origin, no server banner, admin actions audited; and no deployment file
(image, compose, Kubernetes overlays but dev) sets a development default."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import yaml

from app.config import DEV_JWT_SECRET
from app.http.hardening import SECURITY_HEADERS
from tests.deploy.rendered import render
from tests.security.conftest import bearer
from tests.support.processes import ServiceProcess

ROOT = Path(__file__).parents[2]
EXPECTED = {k.decode(): v.decode() for k, v in SECURITY_HEADERS}


async def test_every_response_carries_the_security_headers(sec_api: ServiceProcess, mint: Callable[..., str]) -> None:
    """Success, errors (401, unknown route, 405), OPTIONS, the schema, health, metrics and SSE
    errors alike; the Server header says draftwire (Granian's own name and no version) and nothing
    else names the framework."""
    token = mint("headers-user")
    async with httpx.AsyncClient(base_url=sec_api.url, timeout=10) as http:
        responses = [
            await http.get("/api/drafts", headers=bearer(token)),
            await http.get("/api/drafts"),
            await http.get("/no/such/route"),
            await http.get("/api/autosave", headers=bearer(token)),
            await http.options("/api/drafts/x/build"),
            await http.get("/schema/openapi.json"),
            await http.get("/healthz"),
            await http.get("/metrics"),
            await http.get("/api/events", params={"channel": "job:nope"}, headers=bearer(token)),
        ]
    for r in responses:
        for name, value in EXPECTED.items():
            assert r.headers.get(name) == value, (r.request.url, name, dict(r.headers))
        assert r.headers.get("server") == "draftwire", (r.request.url, r.headers.get("server"))
        assert not any("litestar" in v.lower() or "granian" in v.lower() for v in r.headers.values())
    assert responses[4].headers["allow"] == "GET, OPTIONS, POST"


async def test_cors_is_off_unless_allowed(
    sec_api: ServiceProcess, sec_spawn: Callable[..., ServiceProcess], mint: Callable[..., str]
) -> None:
    """By default no Access-Control-* header, preflight or not; with CORS_ALLOWED_ORIGINS the
    listed origin (only) is allowed, with credentials."""
    token = mint("cors-user")
    preflight = {"Origin": "https://app.example", "Access-Control-Request-Method": "POST"}
    async with httpx.AsyncClient(timeout=10) as http:
        for r in (await http.options(f"{sec_api.url}/api/autosave", headers=preflight),
                  await http.get(f"{sec_api.url}/api/drafts", headers={**bearer(token), "Origin": "https://app.example"})):
            assert not any(k.lower().startswith("access-control-") for k in r.headers), dict(r.headers)
        cors_api = sec_spawn("api", CORS_ALLOWED_ORIGINS="https://app.example")
        allowed = await http.options(f"{cors_api.url}/api/autosave", headers=preflight)
        other = await http.options(f"{cors_api.url}/api/autosave", headers={**preflight, "Origin": "https://evil.example"})
    assert allowed.headers["access-control-allow-origin"] == "https://app.example"
    assert allowed.headers["access-control-allow-credentials"] == "true"
    assert "access-control-allow-origin" not in other.headers


async def test_admin_actions_are_audited(sec_api: ServiceProcess, mint: Callable[..., str]) -> None:
    """Retry, purge and publish each write one admin_action line with the admin's id, the action
    and the target (and never the event's data)."""
    admin_id = f"ops-{uuid.uuid4().hex[:8]}"
    headers = bearer(mint(admin_id, admin=True))
    async with httpx.AsyncClient(base_url=sec_api.url, headers=headers, timeout=10) as http:
        assert (await http.post("/api/admin/queues/draft-build/failed/nope/retry")).status_code == 404
        assert (await http.delete("/api/admin/queues/draft-build/failed")).status_code == 200
        published = await http.post("/api/admin/channels/job:audit/events", json={"type": "ops.note", "data": {"m": "audit-data-marker"}})
        assert published.status_code == 201
    lines = {(line["action"], line["target"]) for line in sec_api.logs()
             if line.get("msg") == "admin_action" and line.get("admin_id") == admin_id}
    assert lines == {("queue.retry", "draft-build/nope"), ("queue.purge_failed", "draft-build"),
                     ("channel.publish", "job:audit")}
    assert "audit-data-marker" not in sec_api.log_path.read_text()


def test_no_deployment_file_sets_dev_defaults() -> None:
    """The image sets no DRAFTWIRE_ENV and no secret; compose defaults to prod and requires
    JWT_SECRET (no default) and every password; the Kubernetes overlays other than dev run as
    production, read secrets only from the Secret, and enable no test jobs."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert not re.search(r"DRAFTWIRE_ENV|JWT_SECRET|DRAFTWIRE_TEST_JOBS", dockerfile)
    compose_text = (ROOT / "compose" / "compose.yaml").read_text()
    env = yaml.safe_load(compose_text)["x-app-env"]
    assert env["DRAFTWIRE_ENV"] == "${DRAFTWIRE_ENV:-prod}"
    assert env["JWT_SECRET"].startswith("${JWT_SECRET:?")
    for name, rest in re.findall(r"\$\{(\w*PASSWORD\w*)([^}]*)\}", compose_text):
        assert not rest.startswith(("-", ":-")), f"{name} has a default in compose.yaml"
    for folder in (ROOT / "compose", ROOT / "deploy"):
        for path in folder.rglob("*"):
            if path.is_file() and "overlays/dev" not in str(path):
                text = path.read_text(errors="replace")
                assert DEV_JWT_SECRET not in text, path
                assert not re.search(r"DRAFTWIRE_ENV\W+dev\b", text), path
                assert not re.search(r"DRAFTWIRE_TEST_JOBS\W+(1|true)", text), path
    overlays = [p.name for p in (ROOT / "deploy" / "kubernetes" / "overlays").iterdir() if p.name != "dev"]
    assert overlays
    for overlay in overlays:
        for doc in render(overlay):
            if doc.get("kind") == "ConfigMap" and "DRAFTWIRE_ENV" in doc.get("data", {}):
                assert doc["data"]["DRAFTWIRE_ENV"] == "production", overlay
                assert not {"JWT_SECRET", "JWT_SECRET_PREVIOUS", "DATABASE_URL"} & set(doc["data"]), overlay
