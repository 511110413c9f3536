"""Build jobs end to end: API -> queue -> worker -> channel events -> stored Markdown."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import psycopg

from app.queue.redis_queue import DraftwireQueue
from tests.queue.conftest import auth, client, eventually, job_status
from tests.support.processes import ServiceProcess

SECTIONS = {
    "Problem": "Drafts get lost when the tab closes.",
    "Goals": ["save every change", "never lose a draft"],
    "Constraints": {"latency_ms": 100, "region": "eu"},
    "Plan": {"phases": [{"name": "one"}, {"name": "two"}]},
    "Open questions": None,
}


async def _events(conn: psycopg.AsyncConnection[Any], channel: str) -> list[tuple[int, str, dict[str, Any]]]:
    cur = await conn.execute("SELECT seq, type, data FROM channel_events WHERE channel = %s ORDER BY seq", (channel,))
    return [(r[0], r[1], r[2]) for r in await cur.fetchall()]


async def test_build_of_five_sections(
    qapi: ServiceProcess,
    qworker: ServiceProcess,
    token: Callable[..., str],
    owner_conn: psycopg.AsyncConnection[Any],
) -> None:
    """Saving a draft with 5 top-level keys and building it at once (before the flush: the build
    reads its own writes) publishes build.started, 5 build.section.completed and build.completed
    on job:<jobId>, in seq order 1..7, and stores Markdown with one section per key. The job
    view follows the contract; the owner alone sees job and build."""
    user = f"user-{uuid.uuid4().hex[:8]}"
    headers = auth(token(user))
    async with client(qapi.url) as http:
        saved = await http.post("/api/autosave", json={"title": "Autosave spec", "payload": SECTIONS}, headers=headers)
        assert saved.status_code == 202
        draft_id = saved.json()["draftId"]
        started = await http.post(f"/api/drafts/{draft_id}/build", headers=headers)
        assert started.status_code == 202, started.text
        job_id = started.json()["jobId"]

        async def view() -> dict[str, Any]:
            return (await http.get(f"/api/jobs/{job_id}", headers=headers)).json()  # type: ignore[no-any-return]

        done = await eventually(view, lambda v: v.get("status") in ("completed", "failed"), timeout=20)
        assert done["status"] == "completed", done
        assert set(done) == {"jobId", "type", "status", "attempts", "progress", "lastSeq", "error", "createdAt", "updatedAt"}
        assert done["jobId"] == job_id
        assert done["type"] == "build"
        assert done["attempts"] == 1
        assert done["progress"] == 1.0
        assert done["lastSeq"] == 7
        assert done["error"] is None
        assert done["createdAt"].endswith("Z")

        events = await _events(owner_conn, f"job:{job_id}")
        assert [seq for seq, _, _ in events] == list(range(1, 8))
        assert [t for _, t, _ in events] == ["build.started"] + ["build.section.completed"] * 5 + ["build.completed"]
        assert events[0][2] == {"sections": 5}
        assert [d for _, _, d in events[1:6]] == [
            {"index": i, "total": 5, "title": title} for i, title in enumerate(SECTIONS, start=1)
        ]

        built = await http.get(f"/api/drafts/{draft_id}/build", headers=headers)
        assert built.status_code == 200
        assert built.headers["content-type"].startswith("text/markdown")
        markdown = built.text
        assert markdown.startswith("# Autosave spec")
        assert [line[3:] for line in markdown.splitlines() if line.startswith("## ")] == list(SECTIONS)
        assert "- never lose a draft" in markdown
        assert events[-1][2] == {"bytes": len(markdown.encode())}

        stranger = auth(token())
        assert (await http.get(f"/api/jobs/{job_id}", headers=stranger)).status_code == 404
        assert (await http.get(f"/api/drafts/{draft_id}/build", headers=stranger)).status_code == 404
        assert (await http.post(f"/api/drafts/{draft_id}/build", headers=stranger)).status_code == 404


async def test_build_bad_input(qapi: ServiceProcess, token: Callable[..., str]) -> None:
    """Unknown or malformed ids get 404 with the JSON error shape, never a 500; no token is 401."""
    headers = auth(token())
    async with client(qapi.url) as http:
        for method, path in [
            ("POST", f"/api/drafts/{uuid.uuid4()}/build"),
            ("POST", "/api/drafts/not-a-uuid/build"),
            ("GET", f"/api/drafts/{uuid.uuid4()}/build"),
            ("GET", f"/api/jobs/build:{uuid.uuid4()}"),
            ("GET", "/api/jobs/nonsense"),
            ("GET", "/api/jobs/draft:someone-else:x"),
        ]:
            response = await http.request(method, path, headers=headers)
            assert response.status_code == 404, (path, response.text)
            assert set(response.json()) == {"error", "detail"}
        assert (await http.post(f"/api/drafts/{uuid.uuid4()}/build")).status_code == 401


async def test_build_of_vanished_draft_fails_once_with_event(
    qworker: ServiceProcess, shared_queues: dict[str, DraftwireQueue], owner_conn: psycopg.AsyncConnection[Any]
) -> None:
    """A build whose draft does not exist cannot succeed by retrying: it fails on its first
    attempt, lands in the dead letter, and its channel gets build.failed with a readable error."""
    queue = shared_queues["draft-build"]
    key = f"build:{uuid.uuid4()}"
    await queue.enqueue("build_draft", key=key, user_id="user-x", draft_id=str(uuid.uuid4()), retries=3, timeout=5)
    await eventually(lambda: job_status(queue, key), lambda s: s == "failed", timeout=15)
    job = await queue.job(key)
    assert job is not None and job.attempts == 1
    events = await eventually(lambda: _events(owner_conn, f"job:{key}"), lambda e: len(e) == 1)
    assert events == [(1, "build.failed", {"error": "the draft no longer exists"})]


async def test_autosave_job_view(qapi: ServiceProcess, qworker: ServiceProcess, token: Callable[..., str]) -> None:
    """The autosave's jobId (draft:<user>:<draft>) is a job its owner can look up."""
    user = f"user-{uuid.uuid4().hex[:8]}"
    async with client(qapi.url) as http:
        saved = await http.post("/api/autosave", json={"title": "t", "payload": {"a": 1}}, headers=auth(token(user)))
        job_id = saved.json()["jobId"]

        async def view() -> Any:
            return await http.get(f"/api/jobs/{job_id}", headers=auth(token(user)))

        done = await eventually(view, lambda r: r.status_code == 200 and r.json()["status"] == "completed")
        assert done.json()["type"] == "autosave"
        assert (await http.get(f"/api/jobs/{job_id}", headers=auth(token()))).status_code == 404
