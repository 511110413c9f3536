"""Access (issue 16, point 4): another user's ids get 404 and never the data, on every route of
the OpenAPI document (the table below must cover each one, so a new route cannot skip this) and
every channel kind over WebSocket and SSE; row-level security holds when code forgets the user."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import httpx
import psycopg
import pytest

from tests.autosave.conftest import eventually
from tests.realtime.support import Client
from tests.security.conftest import bearer
from tests.support.processes import ServiceProcess

MARKER = "payload-marker-5b1e"


@pytest.fixture(scope="module")
async def alice(sec_api: ServiceProcess, sec_worker: ServiceProcess, mint: Callable[..., str]) -> dict[str, str]:
    """Alice's draft (saved, written to Postgres, built): the ids Bob will try."""
    user = f"alice-{uuid.uuid4().hex[:8]}"
    token = mint(user)
    async with httpx.AsyncClient(base_url=sec_api.url, headers=bearer(token), timeout=10) as http:
        saved = (await http.post("/api/autosave", json={"title": f"{MARKER} title", "payload": {"secret": MARKER}})).json()
        draft_id = saved["draftId"]
        await eventually(lambda: http.get(f"/api/drafts/{draft_id}"), lambda r: r.json().get("persisted") is True)
        job_id = (await http.post(f"/api/drafts/{draft_id}/build")).json()["jobId"]
        await eventually(lambda: http.get(f"/api/jobs/{job_id}"), lambda r: r.json().get("status") == "completed")
    return {"user": user, "token": token, "draft_id": draft_id, "job_id": job_id, "flush_job": saved["jobId"]}


def channels(alice: dict[str, str]) -> list[str]:
    """One channel of each kind Alice owns: her build job, her draft, her draft's flush job."""
    return [f"job:{alice['job_id']}", f"draft:{alice['draft_id']}", f"job:{alice['flush_job']}"]


# (method, path) -> what Bob gets with Alice's ids. Admin routes: 403 before any lookup.
EXPECTED = {
    ("POST", "/api/autosave"): 404,
    ("GET", "/api/drafts"): 200,
    ("GET", "/api/drafts/{draft_id}"): 404,
    ("GET", "/api/drafts/{draft_id}/build"): 404,
    ("POST", "/api/drafts/{draft_id}/build"): 404,
    ("GET", "/api/jobs/{job_id}"): 404,
    ("GET", "/api/events"): 404,
    ("GET", "/api/admin/queues"): 403,
    ("POST", "/api/admin/queues/{queue}/failed/{job_id}/retry"): 403,
    ("DELETE", "/api/admin/queues/{queue}/failed"): 403,
    ("POST", "/api/admin/channels/{channel}/events"): 403,
    ("GET", "/api/realtime/metrics"): 403,
}


def request_for(method: str, path: str, alice: dict[str, str], channel: str) -> dict[str, Any]:
    values = {"draft_id": alice["draft_id"], "job_id": alice["job_id"], "queue": "draft-build", "channel": channel}
    url = path.format(**values)
    kwargs: dict[str, Any] = {"method": method, "url": url}
    if path == "/api/autosave":
        kwargs["json"] = {"draftId": alice["draft_id"], "title": "bob was here", "payload": {}}
    elif path == "/api/events":
        kwargs["params"] = {"channel": channel}
    elif method == "POST" and "{channel}" in path:
        kwargs["json"] = {"type": "x.y", "data": {}}
    return kwargs


async def test_every_route_refuses_another_users_ids(
    sec_api: ServiceProcess, alice: dict[str, str], mint: Callable[..., str]
) -> None:
    """Bob, signed in, on every documented route with Alice's draft, job and channels: 404 (or
    403 on admin routes), and no response holds her title, payload, user id or draft id."""
    bob = mint(f"bob-{uuid.uuid4().hex[:8]}")
    async with httpx.AsyncClient(base_url=sec_api.url, headers=bearer(bob), timeout=10) as http:
        schema = (await http.get("/schema/openapi.json")).json()
        documented = {(m.upper(), p) for p, item in schema["paths"].items() for m in item}
        assert documented == set(EXPECTED), f"routes without an access row: {documented ^ set(EXPECTED)}"
        for (method, path), status in EXPECTED.items():
            for channel in channels(alice):
                r = await http.request(**request_for(method, path, alice, channel))
                assert r.status_code == status, (method, path, channel, r.status_code, r.text)
                for secret in (MARKER, alice["user"], alice["draft_id"]):
                    assert secret not in r.text, (method, path, secret)
                if "{channel}" not in path and path != "/api/events":
                    break  # one try is enough where the channel plays no part


async def test_every_channel_kind_refuses_another_user_over_websocket(
    sec_api: ServiceProcess, alice: dict[str, str], mint: Callable[..., str]
) -> None:
    """Bob subscribing to each of Alice's channels gets error not_found and no event; Alice
    herself is answered subscribed (so the refusal is about Bob, not the channel)."""
    bob = await Client.open(sec_api.url, mint(f"bob-{uuid.uuid4().hex[:8]}"))
    owner = await Client.open(sec_api.url, alice["token"])
    try:
        for channel in channels(alice):
            await bob.subscribe(channel)
            error = await bob.wait_for(lambda f, c=channel: f.get("op") == "error" and f.get("channel") == c)
            assert error["code"] == "not_found"
            await owner.subscribe(channel)
            await owner.wait_op("subscribed", channel)
        await bob.send({"op": "ping"})
        await bob.wait_op("pong")
        assert not any(f.get("op") in ("event", "events", "subscribed") for f in bob.frames)
    finally:
        await bob.close()
        await owner.close()


async def test_rls_holds_when_code_forgets_the_user(
    owner_conn: psycopg.AsyncConnection[tuple[object, ...]], alice: dict[str, str]
) -> None:
    """As draftwire_app with no app.current_user_id, every user-owned table reads empty (and
    refuses writes); with Alice's id her rows are there, so the empty answer is RLS at work."""
    for table in ("spec_drafts", "jobs", "draft_builds"):
        async with owner_conn.transaction():
            await owner_conn.execute("SET LOCAL ROLE draftwire_app")
            forgot = await (await owner_conn.execute(f"SELECT count(*) FROM {table}")).fetchone()
            await owner_conn.execute("SELECT set_config('app.current_user_id', %s, true)", (alice["user"],))
            hers = await (await owner_conn.execute(f"SELECT count(*) FROM {table}")).fetchone()
        assert forgot == (0,) and hers is not None and hers[0] >= 1, (table, forgot, hers)
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        async with owner_conn.transaction():
            await owner_conn.execute("SET LOCAL ROLE draftwire_app")
            await owner_conn.execute(
                "INSERT INTO spec_drafts (id, owner_user_id, title, payload, version) VALUES (%s, 'x', 't', '{}', 1)",
                (str(uuid.uuid4()),),
            )
