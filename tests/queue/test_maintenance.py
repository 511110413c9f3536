"""The nightly maintenance slot: retention, job-record cleanup, backups, once per slot."""

from __future__ import annotations

import subprocess
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg

from tests.queue.conftest import eventually, logged, queue_env, run_cli
from tests.support.processes import ServiceProcess

EVERY_2S = "* * * * * */2"  # croniter: a sixth field is seconds


async def test_cron_runs_once_per_slot_and_cleans_up(
    spawn: Callable[..., ServiceProcess],
    isolated_redis_url: str,
    owner_conn: psycopg.AsyncConnection[Any],
    tmp_path: Path,
) -> None:
    """Two workers with the maintenance and backup crons every 2 s: each slot runs exactly once
    across both. A run deletes events older than EVENT_RETENTION_DAYS (keeping the channel's
    head, so seqs never restart) and finished job records older than 7 days, keeps newer ones,
    and the backup job writes dumps and sets backup_last_success_timestamp_seconds."""
    old_channel, kept_channel = f"job:test-{uuid.uuid4().hex}", f"job:test-{uuid.uuid4().hex}"
    for channel in (old_channel, kept_channel):
        await owner_conn.execute("SELECT publish_event(%s, 'test.old', '{}'::jsonb)", (channel,))
    await owner_conn.execute(
        "UPDATE channel_events SET created_at = now() - interval '40 days' WHERE channel = %s", (old_channel,)
    )
    old_job, new_job = f"build:{uuid.uuid4()}", f"build:{uuid.uuid4()}"
    await owner_conn.execute(
        "INSERT INTO jobs (id, owner_user_id, type, queue, status, updated_at) VALUES"
        " (%s, 'u', 'build', 'draft-build', 'completed', now() - interval '8 days'),"
        " (%s, 'u', 'build', 'draft-build', 'completed', now() - interval '6 days')",
        (old_job, new_job),
    )
    env = queue_env(
        isolated_redis_url,
        DRAFTWIRE_MAINTENANCE_CRON=EVERY_2S,
        DRAFTWIRE_BACKUP_CRON=EVERY_2S,
        BACKUP_DIR=str(tmp_path),
    )
    workers = [spawn("worker", **env) for _ in range(2)]

    async def runs() -> list[str]:
        return [line["job_id"] for w in workers for line in logged(w, "maintenance_completed")]

    slots = await eventually(runs, lambda r: len(r) >= 4, timeout=20, every=0.2)
    assert all(count == 1 for count in Counter(slots).values()), slots
    backups = [line for w in workers for line in logged(w, "backup_completed")]
    assert backups
    assert max(w.metric("backup_last_success_timestamp_seconds") for w in workers) > 0
    assert len(list(tmp_path.glob("draftwire-*.dump"))) >= 1
    for w in workers:
        w.stop()

    cur = await owner_conn.execute("SELECT channel FROM channel_events WHERE channel = ANY(%s)", ([old_channel, kept_channel],))
    assert [r[0] for r in await cur.fetchall()] == [kept_channel]
    cur = await owner_conn.execute("SELECT head_seq FROM channel_heads WHERE channel = %s", (old_channel,))
    assert await cur.fetchone() == (1,)
    cur = await owner_conn.execute("SELECT id FROM jobs WHERE id = ANY(%s)", ([old_job, new_job],))
    assert [r[0] for r in await cur.fetchall()] == [new_job]


async def test_backup_restores_into_an_empty_database(
    migrated: str, isolated_redis_url: str, base_env: dict[str, str], owner_conn: psycopg.AsyncConnection[Any],
    tmp_path: Path,
) -> None:
    """`draftwire backup` writes a pg_dump -Fc file named by UTC time; pg_restore of it into a
    new, empty database brings the drafts back; dumps older than BACKUP_RETENTION_DAYS go."""
    draft_id, title = uuid.uuid4(), f"backup probe {uuid.uuid4().hex[:6]}"
    await owner_conn.execute(
        "INSERT INTO spec_drafts (id, owner_user_id, title, payload, version) VALUES (%s, 'u', %s, '{}', 1)",
        (draft_id, title),
    )
    stale = tmp_path / "draftwire-20000101T000000Z.dump"
    stale.write_bytes(b"old")
    result = run_cli(
        isolated_redis_url, {**base_env, "BACKUP_DIR": str(tmp_path), "BACKUP_RETENTION_DAYS": "7"}, "backup"
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "backup written" in result.stdout
    assert "removed 1 backup(s)" in result.stdout
    assert not stale.exists()
    (dump,) = tmp_path.glob("draftwire-*.dump")

    database = f"restore_{uuid.uuid4().hex[:8]}"
    await owner_conn.execute(f'CREATE DATABASE "{database}"')
    try:
        target = migrated.rsplit("/", 1)[0] + f"/{database}"
        restored = subprocess.run(
            ["pg_restore", "--exit-on-error", f"--dbname={target}", str(dump)],
            capture_output=True, text=True, timeout=120, check=False,
        )
        assert restored.returncode == 0, restored.stderr
        async with await psycopg.AsyncConnection.connect(target, autocommit=True) as conn:
            cur = await conn.execute("SELECT title FROM spec_drafts WHERE id = %s", (draft_id,))
            assert await cur.fetchone() == (title,)
            cur = await conn.execute("SELECT count(*) FROM schema_migrations")
            assert (await cur.fetchone())[0] >= 3  # type: ignore[index]
    finally:
        await owner_conn.execute(f'DROP DATABASE "{database}" WITH (FORCE)')
