"""The raw fast paths (``POST /api/autosave`` and the admin publish route, decision 0005) answer
every request exactly as the Litestar routes they stand in front of: an API with
``CORS_ALLOWED_ORIGINS`` set serves without them, so the same requests to both must get the
same status, the same error code and the same headers; the metrics keep the route template."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

import httpx

from tests.security.conftest import bearer
from tests.support.processes import ServiceProcess

PUBLISH = "/api/admin/channels/{channel}/events"


def _requests(user: str, admin: str) -> list[tuple[str, str, dict[str, str], bytes]]:
    """(label, path, headers, body) for POSTs that cover every answer of the two routes."""
    channel = f"job:fast-{uuid.uuid4().hex[:8]}"
    events = PUBLISH.format(channel=channel)
    js = {"content-type": "application/json"}
    good_save = json.dumps({"title": "t", "payload": {"a": 1}}).encode()
    return [
        ("save ok", "/api/autosave", {**bearer(user), **js}, good_save),
        ("save no token", "/api/autosave", js, good_save),
        ("save bad token", "/api/autosave", {**bearer("nope"), **js}, good_save),
        ("save malformed", "/api/autosave", {**bearer(user), **js}, b"{not json"),
        ("save no title", "/api/autosave", {**bearer(user), **js}, b'{"payload": {}}'),
        ("save payload list", "/api/autosave", {**bearer(user), **js}, b'{"title": "t", "payload": [1]}'),
        # Over the 512,000-byte payload limit but under the request-size limit: a body over that
        # is refused before it is read, and the server's close can reset the client mid-upload.
        ("save too large", "/api/autosave", {**bearer(user), **js},
         json.dumps({"title": "t", "payload": {"x": "y" * 600_000}}).encode()),
        ("save other draft", "/api/autosave", {**bearer(user), **js},
         json.dumps({"draftId": str(uuid.uuid4()), "title": "t", "payload": {}, "baseVersion": 99}).encode()),
        ("publish ok", events, {**bearer(admin), **js}, b'{"type": "job.note", "data": {"n": 1}}'),
        ("publish no token", events, js, b'{"type": "job.note"}'),
        ("publish not admin", events, {**bearer(user), **js}, b'{"type": "job.note"}'),
        ("publish bad channel", PUBLISH.format(channel="nope"), {**bearer(admin), **js}, b'{"type": "job.note"}'),
        ("publish spaced channel", PUBLISH.format(channel="job:a b"), {**bearer(admin), **js}, b'{"type": "job.note"}'),
        ("publish bad type", events, {**bearer(admin), **js}, b'{"type": "Bad Type"}'),
        ("publish data list", events, {**bearer(admin), **js}, b'{"type": "job.note", "data": [1]}'),
        ("publish malformed", events, {**bearer(admin), **js}, b"{not json"),
        ("publish not object", events, {**bearer(admin), **js}, b"[1, 2]"),
        ("publish too large", events, {**bearer(admin), **js},
         json.dumps({"type": "job.note", "data": {"x": "y" * 70_000}}).encode()),
        ("publish trailing slash", events + "/", {**bearer(admin), **js}, b'{"type": "job.note"}'),
        ("publish empty channel", "/api/admin/channels//events", {**bearer(admin), **js}, b'{"type": "job.note"}'),
    ]


def _shape(response: httpx.Response) -> dict[str, Any]:
    body = response.json() if response.headers.get("content-type", "").startswith("application/json") else None
    error = body.get("error") if isinstance(body, dict) else None
    keys = sorted(body) if isinstance(body, dict) else None
    headers = {k: v for k, v in response.headers.items()
               if k in ("content-type", "x-content-type-options", "content-security-policy", "server", "retry-after")}
    return {"status": response.status_code, "error": error, "keys": keys, "headers": headers}


async def test_fast_paths_answer_as_their_litestar_routes(
    sec_api: ServiceProcess, sec_spawn: Callable[..., ServiceProcess], mint: Callable[..., str]
) -> None:
    """Same requests, an API with the fast paths and one without: same status, error code, body
    keys and headers for every one (successes, 401, 403, 400, 404, 413, 422, unmatched paths)."""
    plain = sec_spawn("api", CORS_ALLOWED_ORIGINS="https://app.example")
    user, admin = mint(f"fast-{uuid.uuid4().hex[:6]}"), mint("fast-admin", admin=True)
    async with httpx.AsyncClient(timeout=10) as http:
        for label, path, headers, body in _requests(user, admin):
            fast = await http.post(f"{sec_api.url}{path}", headers=headers, content=body)
            slow = await http.post(f"{plain.url}{path}", headers=headers, content=body)
            assert _shape(fast) == _shape(slow), (label, fast.text, slow.text)
            if fast.status_code >= 400:
                assert fast.json()["detail"].endswith("."), (label, fast.text)


async def test_fast_path_metrics_keep_the_route_template(sec_api: ServiceProcess, mint: Callable[..., str]) -> None:
    """A publish through the fast path is counted under its route template, never the channel."""
    channel = f"job:tmpl-{uuid.uuid4().hex[:8]}"
    before = sec_api.metric("http_requests_total", {"path": PUBLISH, "method": "POST", "status_code": "201"})
    async with httpx.AsyncClient(timeout=10) as http:
        r = await http.post(f"{sec_api.url}{PUBLISH.format(channel=channel)}", json={"type": "job.note"},
                            headers=bearer(mint("tmpl-admin", admin=True)))
    assert r.status_code == 201 and r.json()["seq"] == 1
    after = sec_api.metric("http_requests_total", {"path": PUBLISH, "method": "POST", "status_code": "201"})
    assert after == before + 1
    text = httpx.get(f"{sec_api.url}/metrics", timeout=10).text
    assert channel not in text
