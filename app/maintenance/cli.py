"""``draftwire backup``: pg_dump DATABASE_URL into BACKUP_DIR now, keeping BACKUP_RETENTION_DAYS."""

from __future__ import annotations

import argparse
import asyncio

from app.config import Settings


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    backup = sub.add_parser("backup", help="pg_dump DATABASE_URL into BACKUP_DIR, keep BACKUP_RETENTION_DAYS")
    backup.set_defaults(run=_backup)


def _backup(args: argparse.Namespace, settings: Settings) -> int:
    from app.maintenance.backup import run_backup

    result = asyncio.run(run_backup(settings.database_url, settings.backup_dir, settings.backup_retention_days))
    print(f"backup written: {result.path} ({result.bytes} bytes, {result.seconds:.1f} s)")
    if result.removed:
        print(f"removed {len(result.removed)} backup(s) older than {settings.backup_retention_days} days")
    return 0
