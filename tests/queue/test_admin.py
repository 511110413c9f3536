"""The admin view of the queues (API and CLI) and the queue_depth gauge."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

from app.queue.redis_queue import DraftwireQueue
from app.queue.worker import job_defaults
from tests.queue.conftest import (
    auth,
    client,
    enqueue,
    eventually,
    job_status,
    open_queues,
    queue_env,
    run_cli,
)
from tests.support.processes import ServiceProcess

BUILD = "draft-build"


async def test_admin_retry_and_purge(
    qapi: ServiceProcess, qworker: ServiceProcess, shared_queues: dict[str, DraftwireQueue],
    token: Callable[..., str],
) -> None:
    """Admins see every queue's depth; retrying needs a known queue (404), a known job (404) and a
    failed job (409); purging removes failed jobs only, never a delayed one."""
    queue = shared_queues[BUILD]
    failed = await enqueue(queue, "always_fail", attempts=1)
    delayed = f"test:{uuid.uuid4()}"
    await queue.enqueue("noop", key=delayed, scheduled=int(time.time()) + 3600, **job_defaults(2, 3))
    await eventually(lambda: job_status(queue, failed), lambda s: s == "failed", timeout=15)
    admin = auth(token(admin=True))
    async with client(qapi.url) as http:
        assert (await http.get("/api/admin/queues", headers=auth(token()))).status_code == 403
        stats = (await http.get("/api/admin/queues", headers=admin)).json()
        assert set(stats) == {"draft-autosave", "draft-build", "maintenance"}
        assert set(stats[BUILD]) == {"waiting", "active", "delayed", "completed", "failed"}
        assert stats[BUILD]["failed"] >= 1
        assert stats[BUILD]["delayed"] >= 1

        base = "/api/admin/queues"
        unknown_queue = await http.post(f"{base}/nope/failed/{failed}/retry", headers=admin)
        assert unknown_queue.status_code == 404
        assert unknown_queue.json()["error"] == "unknown_queue"
        unknown_job = await http.post(f"{base}/{BUILD}/failed/test:{uuid.uuid4()}/retry", headers=admin)
        assert unknown_job.status_code == 404
        assert (await http.post(f"{base}/{BUILD}/failed/{delayed}/retry", headers=admin)).status_code == 409

        retried = await http.post(f"{base}/{BUILD}/failed/{failed}/retry", headers=admin)
        assert retried.status_code == 200
        assert retried.json() == {"queue": BUILD, "jobId": failed, "status": "queued"}
        await eventually(lambda: job_status(queue, failed), lambda s: s == "failed", timeout=15)

        assert (await http.delete(f"{base}/nope/failed", headers=admin)).status_code == 404
        purged = await http.delete(f"{base}/{BUILD}/failed", headers=admin)
        assert purged.status_code == 200
        assert purged.json()["purged"] >= 1
        assert await queue.job(failed) is None
        assert await job_status(queue, delayed) == "queued"
        assert (await http.get("/api/admin/queues", headers=admin)).json()[BUILD]["failed"] == 0
    await queue.abort(await queue.job(delayed), "test over")  # type: ignore[arg-type]


async def test_queue_depth_gauge_and_cli_stats(
    spawn: Callable[..., ServiceProcess], isolated_redis_url: str, base_env: dict[str, str]
) -> None:
    """With no worker, jobs wait: the API's queue_depth{state="waiting"} (refreshed every 5 s)
    and `draftwire queue stats` show them; purge-failed of an empty dead letter says 0."""
    api = spawn("api", **queue_env(isolated_redis_url))
    redis, queues = await open_queues(isolated_redis_url)
    try:
        for _ in range(5):
            await enqueue(queues[BUILD], "noop")

        async def waiting() -> float:
            return api.metric("queue_depth", {"queue": BUILD, "state": "waiting"})

        await eventually(waiting, lambda v: v == 5, timeout=12, every=0.5)
        assert api.metric("queue_depth", {"queue": BUILD, "state": "failed"}) == 0
        stats = run_cli(isolated_redis_url, base_env, "queue", "stats")
        assert stats.returncode == 0
        row = next(line for line in stats.stdout.splitlines() if line.startswith(BUILD))
        assert row.split()[1:] == ["5", "0", "0", "0", "0"]
        purge = run_cli(isolated_redis_url, base_env, "queue", "purge-failed", BUILD)
        assert purge.returncode == 0
        assert "purged 0 failed job(s)" in purge.stdout
        assert run_cli(isolated_redis_url, base_env, "queue", "purge-failed", "nope").returncode == 1
    finally:
        await redis.aclose()
        api.stop()
