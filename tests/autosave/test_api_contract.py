"""Every status code of the contract's autosave section, through a real Granian server."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable

import httpx
import pytest

from app.realtime.routes import PUBLISH_TEMPLATE
from tests.autosave.conftest import auth, client, save_body
from tests.support.processes import ServiceProcess


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"] == code
    assert isinstance(body["detail"], str) and body["detail"].endswith(".")
    assert response.headers["content-type"].startswith("application/json")


async def test_save_is_accepted_with_the_contract_shape(api: ServiceProcess, token: Callable[..., str]) -> None:
    """A valid save answers 202 with draftId, version 1, the dedupe job id and status queued."""
    user = f"u-{uuid.uuid4().hex[:8]}"
    async with client(api.url) as http:
        response = await http.post("/api/autosave", json=save_body(), headers=auth(token(user)))
    assert response.status_code == 202
    body = response.json()
    assert body["version"] == 1 and body["status"] == "queued"
    assert body["jobId"] == f"draft:{user}:{body['draftId']}"
    uuid.UUID(body["draftId"])


async def test_versions_increase_by_one_per_save(api: ServiceProcess, token: Callable[..., str]) -> None:
    """Each accepted save of a draft gets the next version; a current baseVersion is accepted."""
    headers = auth(token())
    async with client(api.url) as http:
        first = (await http.post("/api/autosave", json=save_body(), headers=headers)).json()
        second = await http.post(
            "/api/autosave", json=save_body(draftId=first["draftId"], baseVersion=1), headers=headers
        )
        third = await http.post("/api/autosave", json=save_body(draftId=first["draftId"]), headers=headers)
    assert [first["version"], second.json()["version"], third.json()["version"]] == [1, 2, 3]


async def test_get_autosave_answers_405(api: ServiceProcess) -> None:
    """The runbook's health probe: GET /api/autosave is 405 with a JSON error."""
    async with client(api.url) as http:
        assert_error(await http.get("/api/autosave"), 405, "method_not_allowed")


@pytest.mark.parametrize("body", [b"{not json", b"", b"[1, 2", b"\xff\xfe", b'"just a string"', b"[]", b"null"])
async def test_malformed_json_is_400(api: ServiceProcess, token: Callable[..., str], body: bytes) -> None:
    """Bodies that are not a JSON object answer 400 malformed_json."""
    async with client(api.url) as http:
        response = await http.post(
            "/api/autosave", content=body, headers={**auth(token()), "content-type": "application/json"}
        )
    assert_error(response, 400, "malformed_json")


async def test_deeply_nested_json_is_refused_not_crashed(api: ServiceProcess, token: Callable[..., str]) -> None:
    """Pathologically nested JSON gets a 4xx, never a 500."""
    deep = '{"title": "t", "payload": {"a": ' + "[" * 5000 + "]" * 5000 + "}}"
    async with client(api.url) as http:
        response = await http.post("/api/autosave", content=deep, headers=auth(token()))
    assert response.status_code in (400, 422), response.text
    assert response.json()["error"] in ("malformed_json", "invalid_payload")


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer not-a-jwt"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Cookie": "session=forged.token.value"},
    ],
)
async def test_missing_or_bad_tokens_are_401(api: ServiceProcess, headers: dict[str, str]) -> None:
    """No token, garbage, the wrong scheme or a forged cookie: 401 unauthorized."""
    async with client(api.url) as http:
        assert_error(await http.post("/api/autosave", json=save_body(), headers=headers), 401, "unauthorized")


async def test_expired_and_wrongly_signed_tokens_are_401(api: ServiceProcess, token: Callable[..., str]) -> None:
    """An expired token or one signed with another key is refused."""
    from app.auth import issue

    async with client(api.url) as http:
        expired = await http.post("/api/autosave", json=save_body(), headers=auth(token(ttl=-120)))
        forged = await http.post("/api/autosave", json=save_body(), headers=auth(issue("x" * 32, "alice")))
    assert_error(expired, 401, "unauthorized")
    assert_error(forged, 401, "unauthorized")


async def test_dev_secret_tokens_are_401_in_production(api: ServiceProcess) -> None:
    """The shared API runs production-like (DRAFTWIRE_ENV=test, its own secret): an admin token
    minted with the built-in development secret, as anyone could, gets 401 everywhere."""
    from app.auth import issue
    from app.config import DEV_JWT_SECRET

    minted = auth(issue(DEV_JWT_SECRET, "mallory", admin=True))
    async with client(api.url) as http:
        save = await http.post("/api/autosave", json=save_body(), headers=minted)
        admin = await http.get("/api/admin/queues", headers=minted)
    assert_error(save, 401, "unauthorized")
    assert_error(admin, 401, "unauthorized")


async def test_session_cookie_is_accepted(api: ServiceProcess, token: Callable[..., str]) -> None:
    """The session cookie authenticates like the bearer header."""
    async with client(api.url) as http:
        response = await http.post("/api/autosave", json=save_body(), headers={"Cookie": f"session={token()}"})
    assert response.status_code == 202


async def test_another_users_draft_is_404_and_untouched(api: ServiceProcess, token: Callable[..., str]) -> None:
    """User B can neither overwrite nor read user A's draft: both answer 404, A's version stays."""
    alice, bob = auth(token()), auth(token())
    async with client(api.url) as http:
        saved = (await http.post("/api/autosave", json=save_body("Alice's"), headers=alice)).json()
        overwrite = await http.post("/api/autosave", json=save_body("Bob's", draftId=saved["draftId"]), headers=bob)
        read = await http.get(f"/api/drafts/{saved['draftId']}", headers=bob)
        mine = await http.get(f"/api/drafts/{saved['draftId']}", headers=alice)
    assert_error(overwrite, 404, "not_found")
    assert_error(read, 404, "not_found")
    assert mine.json()["title"] == "Alice's" and mine.json()["version"] == 1


async def test_stale_base_version_is_409(api: ServiceProcess, token: Callable[..., str]) -> None:
    """A baseVersion older than the latest answers 409 version_conflict naming the latest."""
    headers = auth(token())
    async with client(api.url) as http:
        saved = (await http.post("/api/autosave", json=save_body(), headers=headers)).json()
        await http.post("/api/autosave", json=save_body(draftId=saved["draftId"]), headers=headers)
        stale = await http.post("/api/autosave", json=save_body(draftId=saved["draftId"], baseVersion=1), headers=headers)
    assert_error(stale, 409, "version_conflict")
    assert "version 2" in stale.json()["detail"]


async def test_payload_over_limit_is_413(api: ServiceProcess, token: Callable[..., str]) -> None:
    """A 600 KB payload (serialized) answers 413 payload_too_large."""
    payload = {"text": "x" * 600_000}
    async with client(api.url) as http:
        response = await http.post("/api/autosave", json=save_body(payload=payload), headers=auth(token()))
    assert_error(response, 413, "payload_too_large")


async def test_body_of_several_megabytes_is_refused_unread(api: ServiceProcess, token: Callable[..., str]) -> None:
    """A body announcing 5 MB is refused with 413 after only its first bytes were sent."""
    import asyncio

    reader, writer = await asyncio.open_connection("127.0.0.1", api.port)
    writer.write(
        (
            "POST /api/autosave HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
            f"Authorization: Bearer {token()}\r\nContent-Length: 5000000\r\n\r\n"
        ).encode()
        + b'{"title": "t", "payload": {"text": "'
        + b"z" * 1000
    )
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    assert head.startswith(b"HTTP/1.1 413"), head
    length = int(next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")))
    body = json.loads(await asyncio.wait_for(reader.readexactly(length), 10))
    assert body["error"] == "payload_too_large"
    writer.close()


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"payload": {}}, "invalid_title"),
        ({"title": "", "payload": {}}, "invalid_title"),
        ({"title": "   ", "payload": {}}, "invalid_title"),
        ({"title": 42, "payload": {}}, "invalid_title"),
        ({"title": "é" * 201, "payload": {}}, "invalid_title"),
        ({"title": "ok"}, "invalid_payload"),
        ({"title": "ok", "payload": None}, "invalid_payload"),
        ({"title": "ok", "payload": [1, 2]}, "invalid_payload"),
        ({"title": "ok", "payload": "text"}, "invalid_payload"),
        ({"title": "ok", "payload": {}, "draftId": "not-a-uuid"}, "invalid_draft_id"),
        ({"title": "ok", "payload": {}, "baseVersion": "7"}, "invalid_base_version"),
    ],
)
async def test_invalid_fields_are_422(api: ServiceProcess, token: Callable[..., str], body: dict, code: str) -> None:
    """Titles missing, empty or over 200 characters, and payloads that are not objects, are 422."""
    async with client(api.url) as http:
        assert_error(await http.post("/api/autosave", json=body, headers=auth(token())), 422, code)


async def test_title_limit_counts_characters_not_bytes(api: ServiceProcess, token: Callable[..., str]) -> None:
    """200 two-byte characters (400 bytes) is a valid title."""
    async with client(api.url) as http:
        response = await http.post("/api/autosave", json=save_body("é" * 200), headers=auth(token()))
    assert response.status_code == 202


async def test_unknown_fields_are_ignored(api: ServiceProcess, token: Callable[..., str]) -> None:
    """Unknown top-level fields do not fail a save (forward compatible clients)."""
    async with client(api.url) as http:
        response = await http.post("/api/autosave", json=save_body(client="v2", extra={"a": 1}), headers=auth(token()))
    assert response.status_code == 202


async def test_unknown_draft_id_reads_404(api: ServiceProcess, token: Callable[..., str]) -> None:
    """Reading a draft that does not exist, or a malformed id, is 404."""
    async with client(api.url) as http:
        assert_error(await http.get(f"/api/drafts/{uuid.uuid4()}", headers=auth(token())), 404, "not_found")
        assert_error(await http.get("/api/drafts/nope", headers=auth(token())), 404, "not_found")


async def test_rate_limit_is_shared_across_api_processes(
    api: ServiceProcess, spawn: Callable[..., ServiceProcess], token: Callable[..., str]
) -> None:
    """30 saves a minute per user across two API processes; the 31st gets 429 with Retry-After."""
    other = spawn("api")
    headers = auth(token())
    before = api.metric("rate_limit_events_total", {"scope": "autosave"}) + other.metric(
        "rate_limit_events_total", {"scope": "autosave"}
    )
    async with client(api.url) as a, client(other.url) as b:
        for i in range(30):
            response = await (a if i % 2 else b).post("/api/autosave", json=save_body(), headers=headers)
            assert response.status_code == 202, (i, response.text)
        refused = await a.post("/api/autosave", json=save_body(), headers=headers)
        refused_too = await b.post("/api/autosave", json=save_body(), headers=headers)
    assert_error(refused, 429, "rate_limited")
    assert_error(refused_too, 429, "rate_limited")
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    after = api.metric("rate_limit_events_total", {"scope": "autosave"}) + other.metric(
        "rate_limit_events_total", {"scope": "autosave"}
    )
    assert after - before == 2


async def test_other_routes_are_limited_per_client(spawn: Callable[..., ServiceProcess], token: Callable[..., str]) -> None:
    """Routes without their own limit share RATE_LIMIT_REQUESTS per client, then 429."""
    limited = spawn("api", RATE_LIMIT_REQUESTS="5", RATE_LIMIT_WINDOW_SECONDS="60")
    headers = auth(token(admin=True))
    async with client(limited.url) as http:
        codes = [(await http.get("/api/drafts", headers=headers)).status_code for _ in range(6)]
        # A refused request with a body (read ahead while Redis counted it) answers 429 as well.
        publish = f"/api/admin/channels/job:{uuid.uuid4().hex}/events"
        refused = await http.post(publish, json={"type": "t.x", "data": {"n": 1}}, headers=headers)
        health = await http.get("/healthz")
    assert codes == [200] * 5 + [429]
    assert_error(refused, 429, "rate_limited")
    assert health.status_code == 200  # probes are never limited
    assert limited.metric("rate_limit_events_total", {"scope": "api", "endpoint": "/api/drafts"}) == 1
    assert limited.metric("rate_limit_events_total", {"scope": "api", "endpoint": PUBLISH_TEMPLATE}) == 1


async def test_redis_down_is_503_queue_unavailable(
    spawn: Callable[..., ServiceProcess], token: Callable[..., str]
) -> None:
    """With Redis unreachable a save is refused with 503 queue_unavailable and Retry-After."""
    from devstack.servers import free_port

    broken = spawn("api", REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    async with client(broken.url) as http:
        response = await http.post("/api/autosave", json=save_body(), headers=auth(token()))
        ready = await http.get("/readyz")
    assert_error(response, 503, "queue_unavailable")
    assert int(response.headers["Retry-After"]) > 0
    assert ready.status_code == 503 and ready.json()["checks"]["redis"] == "redis ping failed"
