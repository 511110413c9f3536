"""Workers that die or are stopped lose nothing: killed (SIGKILL) and drained (SIGTERM)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import psycopg
from redis.asyncio import Redis

from app.autosave.flush import LEASE_MS
from app.autosave.store import DIRTY, FLUSHING_PREFIX
from app.queue.worker import HEARTBEAT_S, SWEEP_EVERY_S
from app.roles.shutdown import STUCK_EXIT_CODE
from tests.queue.conftest import auth, client, enqueue, eventually, job_status, logged, open_queues, queue_env
from tests.support.processes import ServiceProcess

BUILD = "draft-build"


async def test_sigkilled_worker_jobs_finish_elsewhere_within_30s(
    spawn: Callable[..., ServiceProcess], isolated_redis_url: str
) -> None:
    """A worker SIGKILLed while running jobs: another worker runs each of them to completion
    within 30 s of the kill (heartbeat lapses, the 5-s sweep takes them back), none is lost."""
    env = queue_env(isolated_redis_url, WORKER_TASK_TIMEOUT="10s")
    first = spawn("worker", **env)
    redis, queues = await open_queues(isolated_redis_url)
    queue = queues[BUILD]
    mark = uuid.uuid4().hex
    try:
        keys = [await enqueue(queue, "sleep_for", timeout=10, seconds=4, mark=mark) for _ in range(6)]
        statuses = lambda: asyncio.gather(*(job_status(queue, k) for k in keys))  # noqa: E731
        await eventually(statuses, lambda s: s == ["active"] * len(keys), timeout=10)
        first.kill()
        killed_at = time.monotonic()
        second = spawn("worker", **env)
        done = await eventually(
            lambda: redis.smembers(f"dwtest:done:{mark}"), lambda s: len(s) == len(keys), timeout=30
        )
        assert time.monotonic() - killed_at < 30
        assert {k.decode() for k in done} == set(keys)
        # The handler marks its work done just before SAQ records the job complete: wait for that.
        # Usually each job completes on its 2nd attempt. Once in a CI rehearsal (2026-12-01) one 2nd
        # attempt hit WORKER_TASK_TIMEOUT after its work was marked done and a 3rd attempt
        # completed it: not lost, so accepted here, and noted for investigation.
        jobs = await eventually(
            lambda: queue.jobs(keys),
            lambda found: all(j is not None and j.status.value == "complete" for j in found),
            timeout=30,
        )
        assert all(j.attempts >= 2 for j in jobs), [j.attempts for j in jobs]
        assert second.metric("job_retries_total", {"queue": BUILD}) >= len(keys)
        second.stop()
    finally:
        await redis.aclose()


async def test_sigterm_drains_and_returns_the_rest(
    spawn: Callable[..., ServiceProcess], isolated_redis_url: str
) -> None:
    """SIGTERM under load: the worker stops taking jobs, lets short in-flight jobs finish,
    cancels what outlives the grace period back onto the queue, and exits in time; another
    worker then completes everything. No job is lost or left half-done."""
    env = queue_env(isolated_redis_url, WORKER_TASK_TIMEOUT="30s", DRAFTWIRE_SHUTDOWN_GRACE="3s")
    first = spawn("worker", **env)
    redis, queues = await open_queues(isolated_redis_url)
    queue = queues[BUILD]
    mark = uuid.uuid4().hex
    try:
        short = [await enqueue(queue, "sleep_for", timeout=30, seconds=1, mark=mark) for _ in range(30)]
        long = [await enqueue(queue, "sleep_for", timeout=30, seconds=8, mark=mark) for _ in range(2)]
        # Both long jobs running (they start as short ones free their slots, not necessarily together).
        await eventually(lambda: asyncio.gather(*(job_status(queue, k) for k in long)),
                         lambda s: s == ["active"] * len(long), timeout=15)
        stopped_at = time.monotonic()
        code = first.stop()
        assert code == 0
        assert time.monotonic() - stopped_at < 30
        returned = [line["job_id"] for line in logged(first, "job_failed_retrying")]
        assert set(long) <= set(returned)
        finished_by_first = {k.decode() for k in await redis.smembers(f"dwtest:done:{mark}")}
        assert not finished_by_first & set(long)
        spawn("worker", **env)
        done = await eventually(
            lambda: redis.smembers(f"dwtest:done:{mark}"), lambda s: len(s) >= len(short) + len(long), timeout=40
        )
        assert {k.decode() for k in done} == set(short + long)
    finally:
        await redis.aclose()


async def test_a_shutdown_that_hangs_still_exits_in_time_and_says_where(
    spawn: Callable[..., ServiceProcess], isolated_redis_url: str
) -> None:
    """A job that ignores cancellation cannot hold a SIGTERMed worker past its bound: the job
    goes back to its queue, the watchdog ends the process (exit 70) before grace + 4.5 s, and
    the log says where it hung: ``shutdown_step_overran`` lists the waiting tasks (the stuck
    handler among them), ``shutdown_overran`` precedes the threads' stacks."""
    env = queue_env(isolated_redis_url, WORKER_TASK_TIMEOUT="60s", DRAFTWIRE_SHUTDOWN_GRACE="1s")
    first = spawn("worker", **env)
    redis, queues = await open_queues(isolated_redis_url)
    queue = queues[BUILD]
    try:
        key = await enqueue(queue, "stubborn", timeout=60, seconds=60)
        await eventually(lambda: job_status(queue, key), lambda s: s == "active", timeout=10)
        stopped_at = time.monotonic()
        code = first.stop()
        took = time.monotonic() - stopped_at
        assert code == STUCK_EXIT_CODE, first.tail(30)
        assert took < 1 + 4.5 + 1, took  # grace + cancel + close + margin, plus process start-up slack
        assert logged(first, "shutdown_overran"), first.tail(30)
        overran = logged(first, "shutdown_step_overran")
        assert any("stubborn" in task for line in overran for task in line["tasks"]), overran  # names the culprit
        assert key in [line["job_id"] for line in logged(first, "job_failed_retrying")]
        job = (await queue.jobs([key]))[0]
        assert job is not None and job.status.value == "queued", job
    finally:
        await redis.aclose()


async def test_killed_worker_autosave_flushes_recover(
    spawn: Callable[..., ServiceProcess],
    isolated_redis_url: str,
    token: Callable[..., str],
    owner_conn: psycopg.AsyncConnection[Any],
) -> None:
    """Drafts saved while their worker is SIGKILLed reach Postgres at their latest version once
    another worker is up: the flush jobs (or the dirty-draft sweep) are taken back."""
    env = queue_env(isolated_redis_url, AUTOSAVE_FLUSH_DELAY="1s")
    api = spawn("api", **env)
    first = spawn("worker", **env)
    user = f"user-{uuid.uuid4().hex[:8]}"
    headers = auth(token(user))
    latest: dict[str, int] = {}
    async with client(api.url) as http:
        for i in range(20):
            body = {"title": f"draft {i}", "payload": {"n": i}}
            saved = (await http.post("/api/autosave", json=body, headers=headers)).json()
            again = await http.post("/api/autosave", json={**body, "draftId": saved["draftId"]}, headers=headers)
            latest[saved["draftId"]] = again.json()["version"]
        first.kill()
        spawn("worker", **env)

        async def stored() -> dict[str, int]:
            cur = await owner_conn.execute(
                "SELECT id::text, version FROM spec_drafts WHERE id = ANY(%s::uuid[])", (list(latest),)
            )
            return {r[0]: r[1] for r in await cur.fetchall()}

        assert await eventually(stored, lambda s: s == latest, timeout=30) == latest
    api.stop()


async def test_hundred_concurrent_saves_of_one_draft(
    spawn: Callable[..., ServiceProcess],
    isolated_redis_url: str,
    token: Callable[..., str],
    owner_conn: psycopg.AsyncConnection[Any],
) -> None:
    """100 concurrent saves of one draft, two workers flushing meanwhile: Postgres ends at the
    last accepted version, and each version is written at most once, in increasing order
    (draft.saved events), so no two flushes of the draft overlapped."""
    env = queue_env(isolated_redis_url, AUTOSAVE_FLUSH_DELAY="50ms")
    api = spawn("api", **env)
    workers = [spawn("worker", **env) for _ in range(2)]
    headers = auth(token(f"user-{uuid.uuid4().hex[:8]}"))
    async with client(api.url) as http:
        first = (await http.post("/api/autosave", json={"title": "t", "payload": {"v": 0}}, headers=headers)).json()
        draft_id = first["draftId"]

        async def save(i: int) -> httpx.Response:
            await asyncio.sleep(i * 0.002)  # spread over ~200 ms so flushes run meanwhile
            body = {"draftId": draft_id, "title": "t", "payload": {"v": i}}
            return await http.post("/api/autosave", json=body, headers=headers)

        responses = await asyncio.gather(*(save(i) for i in range(1, 101)))
    assert all(r.status_code == 202 for r in responses)
    versions = sorted(r.json()["version"] for r in responses)
    assert versions == list(range(2, 102))

    async def stored() -> int:
        cur = await owner_conn.execute("SELECT version FROM spec_drafts WHERE id = %s", (draft_id,))
        row = await cur.fetchone()
        return row[0] if row else 0

    await eventually(stored, lambda v: v == 101, timeout=20)
    cur = await owner_conn.execute(
        "SELECT (data->>'version')::int FROM channel_events WHERE channel = %s ORDER BY seq", (f"draft:{draft_id}",)
    )
    written = [r[0] for r in await cur.fetchall()]
    assert written == sorted(set(written))
    assert written[-1] == 101
    assert sum(w.metric("autosave_db_writes_total") for w in workers) >= len(written)
    api.stop()



async def test_worker_killed_while_its_flush_is_in_flight(
    spawn: Callable[..., ServiceProcess],
    isolated_redis_url: str,
    migrated: str,
    token: Callable[..., str],
    owner_conn: psycopg.AsyncConnection[Any],
) -> None:
    """A worker SIGKILLed while its flush batch is blocked inside its Postgres transaction (the test
    holds the draft's row lock; the flush lease is in Redis and the upsert waits on the lock):
    once the lock is released and another worker is up, the draft reaches Postgres at its last
    version within the stalled-job window, and no version is written twice."""
    # The dead worker's lease keeps other batches off the draft until it expires; the job is seen
    # stalled when its heartbeat lapses and the next sweep runs.
    window = LEASE_MS / 1000 + HEARTBEAT_S + SWEEP_EVERY_S
    # Long enough that neither the job nor the statement gives up while the test holds the lock.
    env = queue_env(isolated_redis_url, WORKER_TASK_TIMEOUT="120s", DB_QUERY_TIMEOUT="120s")
    api = spawn("api", **env)
    first = spawn("worker", **env)
    redis = Redis.from_url(isolated_redis_url)
    headers = auth(token(f"user-{uuid.uuid4().hex[:8]}"))
    lock = await psycopg.AsyncConnection.connect(migrated)
    try:
        async with client(api.url) as http:
            draft_id = (await http.post("/api/autosave", json={"title": "t", "payload": {"v": 1}},
                                        headers=headers)).json()["draftId"]
            lease = f"{FLUSHING_PREFIX}{draft_id}"

            async def stored() -> int:
                cur = await owner_conn.execute("SELECT version FROM spec_drafts WHERE id = %s", (draft_id,))
                row = await cur.fetchone()
                return int(row[0]) if row else 0

            await eventually(stored, lambda v: v == 1, timeout=20)
            await eventually(lambda: redis.exists(lease), lambda n: n == 0, timeout=20)

            await lock.execute("SELECT 1 FROM spec_drafts WHERE id = %s FOR UPDATE", (draft_id,))
            body = {"draftId": draft_id, "title": "t", "payload": {"v": 2}}
            assert (await http.post("/api/autosave", json=body, headers=headers)).json()["version"] == 2

            async def blocked() -> list[tuple[Any, ...]]:
                cur = await owner_conn.execute(
                    "SELECT application_name, wait_event_type, query FROM pg_stat_activity"
                    " WHERE %s = ANY(pg_blocking_pids(pid))", (lock.info.backend_pid,))
                return await cur.fetchall()

            waiting = await eventually(blocked, lambda rows: len(rows) == 1, timeout=20)
            assert waiting[0][:2] == ("draftwire", "Lock") and "spec_drafts" in waiting[0][2]
            assert await redis.exists(lease) == 1, "the flush holds the draft's lease while it waits"
            body = {"draftId": draft_id, "title": "t", "payload": {"v": 3}}
            assert (await http.post("/api/autosave", json=body, headers=headers)).json()["version"] == 3

            first.kill()
            killed_at = time.monotonic()
            await lock.rollback()  # the dead worker's statement may now run (and commit) on its own
            second = spawn("worker", **env)
            await eventually(stored, lambda v: v == 3, timeout=window + 20)
            assert time.monotonic() - killed_at < window + 20, f"not within {window:.0f} s (+20 s slack)"

        cur = await owner_conn.execute(
            "SELECT (data->>'version')::int FROM channel_events WHERE channel = %s ORDER BY seq", (f"draft:{draft_id}",)
        )
        written = [r[0] for r in await cur.fetchall()]
        assert written == sorted(set(written)), f"a version written twice or out of order: {written}"
        assert written[0] == 1 and written[-1] == 3
        assert await eventually(lambda: redis.zscore(DIRTY, draft_id), lambda s: s is None, timeout=20) is None
        second.stop()
    finally:
        await lock.close()
        await redis.aclose()
    api.stop()
