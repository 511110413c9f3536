"""With Postgres down, routes that need it answer 503 ``database_unavailable`` with
Retry-After (a client retries), never a 500; saves Redis can take keep being accepted."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from pathlib import Path

from app.db.migrate import migrate
from devstack.servers import PostgresServer
from tests.autosave.conftest import auth, client, save_body
from tests.support.processes import ServiceProcess


async def test_reads_answer_503_while_postgres_is_down(
    scratch: Path, spawn: Callable[..., ServiceProcess], fresh_redis_url: Callable[[], str], token: Callable[..., str]
) -> None:
    pg = PostgresServer(scratch / "pg").start()
    try:
        await migrate(pg.url, progress=None)
        api = spawn("api", DATABASE_URL=pg.url, REDIS_URL=fresh_redis_url(), DB_QUERY_TIMEOUT="1s")
        headers = auth(token())
        async with client(api.url) as http:
            assert (await http.get("/api/drafts", headers=headers)).status_code == 200
            await asyncio.to_thread(pg.stop, "immediate")
            listed = await http.get("/api/drafts", headers=headers)
            saved = await http.post("/api/autosave", json=save_body(), headers=headers)
            # The admin publish is a raw fast path (decision 0005): the same answer and log line.
            published = await http.post(f"/api/admin/channels/job:{uuid.uuid4()}/events",
                                        json={"type": "note", "data": {}}, headers=auth(token(admin=True)))
        assert listed.status_code == 503, listed.text
        assert listed.json()["error"] == "database_unavailable"
        assert listed.headers["retry-after"]
        assert saved.status_code == 202, saved.text  # a new draft needs only Redis
        assert published.status_code == 503, published.text
        assert published.json()["error"] == "database_unavailable"
        assert published.headers["retry-after"]
        # On-call finds each 503 in the log, named by its route template (never the channel).
        logged = {line.get("route") for line in api.logs() if line.get("msg") == "database_unavailable"}
        assert {"/api/drafts", "/api/admin/channels/{channel}/events"} <= logged, logged
    finally:
        pg.stop("immediate")
