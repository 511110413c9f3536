"""``draftwire backup``: a ``pg_dump -Fc`` of ``DATABASE_URL`` into ``BACKUP_DIR``, named by its
UTC time (``draftwire-20261123T020000Z.dump``), keeping ``BACKUP_RETENTION_DAYS`` of them.

The worker runs it from the nightly maintenance slot and sets
``backup_last_success_timestamp_seconds``; restore with ``pg_restore -d <empty db> <file>``.
The database URL goes to ``pg_dump`` through the environment, never on a command line or in a log.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import unquote, urlsplit

from observability.logging import get_logger
from observability.metrics import BACKUP_LAST_SUCCESS

log = get_logger(__name__)

_NAME = re.compile(r"^draftwire-(\d{8}T\d{6}Z)\.dump$")
_STAMP = "%Y%m%dT%H%M%SZ"


class BackupError(RuntimeError):
    """pg_dump failed; the message carries its last line of stderr."""


@dataclass(frozen=True)
class BackupResult:
    path: Path
    bytes: int
    removed: list[Path]
    seconds: float


def _pg_env(database_url: str) -> dict[str, str]:
    """libpq variables for the URL, so the password never shows in ``ps``."""
    parts = urlsplit(database_url)
    env = dict(os.environ)
    for var, value in (
        ("PGHOST", parts.hostname),
        ("PGPORT", str(parts.port) if parts.port else None),
        ("PGUSER", unquote(parts.username) if parts.username else None),
        ("PGPASSWORD", unquote(parts.password) if parts.password else None),
        ("PGDATABASE", parts.path.lstrip("/") or None),
    ):
        if value:
            env[var] = value
    if parts.query:
        for pair in parts.query.split("&"):
            key, _, value = pair.partition("=")
            if key == "sslmode":
                env["PGSSLMODE"] = value
    return env


async def run_backup(database_url: str, backup_dir: str, retention_days: int) -> BackupResult:
    """Dump to ``<dir>/draftwire-<UTC>.dump`` (written to a temp name, then renamed) and prune."""
    start = time.monotonic()
    folder = Path(backup_dir)
    folder.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 - one mkdir per night
    now = datetime.now(UTC)
    target = folder / f"draftwire-{now.strftime(_STAMP)}.dump"
    partial = target.with_suffix(".dump.partial")
    proc = await asyncio.create_subprocess_exec(
        "pg_dump", "--format=custom", "--no-password", f"--file={partial}",
        env=_pg_env(database_url), stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await proc.communicate()
    if proc.returncode != 0:
        partial.unlink(missing_ok=True)
        lines = stderr.decode(errors="replace").strip().splitlines()
        raise BackupError(f"pg_dump exited with {proc.returncode}: {lines[-1] if lines else 'no output'}")
    partial.rename(target)
    removed = prune(folder, now - timedelta(days=retention_days))
    return BackupResult(target, target.stat().st_size, removed, time.monotonic() - start)


def prune(folder: Path, before: datetime) -> list[Path]:
    """Delete our dumps whose name says they are older than ``before``; other files stay."""
    removed = []
    for path in folder.iterdir():
        match = _NAME.match(path.name)
        if match and datetime.strptime(match.group(1), _STAMP).replace(tzinfo=UTC) < before:
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def newest_backup_time(backup_dir: str) -> float | None:
    """Unix time of the newest complete dump in ``backup_dir`` (from its name), or None."""
    folder = Path(backup_dir)
    if not folder.is_dir():
        return None
    stamps = [
        datetime.strptime(m.group(1), _STAMP).replace(tzinfo=UTC).timestamp()
        for m in (_NAME.match(p.name) for p in folder.iterdir())
        if m
    ]
    return max(stamps, default=None)


def restore_backup_gauge(backup_dir: str) -> None:
    """At worker start: the success gauge reflects dumps already on disk (a restart, or a
    manual ``draftwire backup``), so BackupTooOld does not fire just because a worker restarted."""
    newest = newest_backup_time(backup_dir)
    if newest is not None:
        BACKUP_LAST_SUCCESS.set(newest)


async def backup_and_record(database_url: str, backup_dir: str, retention_days: int) -> BackupResult:
    """The worker's nightly backup: run it, log it, set the success gauge."""
    result = await run_backup(database_url, backup_dir, retention_days)
    BACKUP_LAST_SUCCESS.set(time.time())
    log.info(
        "backup_completed",
        file=result.path.name,
        bytes=result.bytes,
        removed=len(result.removed),
        latency_ms=round(result.seconds * 1000),
    )
    return result
