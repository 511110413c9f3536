"""Maintenance: the nightly retention job and ``pg_dump`` backups on the ``maintenance`` queue
(cron, at most one run per slot across all workers), and ``draftwire backup``."""

from __future__ import annotations

from app.maintenance.backup import restore_backup_gauge
from app.maintenance.jobs import BACKUP_TIMEOUT_S, maintenance_handlers
from app.parts import Cron, WorkerPart
from app.platform import Platform
from app.queue.names import MAINTENANCE


def worker_part(platform: Platform) -> WorkerPart:
    settings = platform.settings
    nightly = maintenance_handlers(platform.db, platform.queues, settings)
    return WorkerPart(
        cron={
            MAINTENANCE: [
                Cron("maintenance", nightly["maintenance"], settings.maintenance_cron),
                Cron("backup", nightly["backup"], settings.backup_cron, timeout_s=BACKUP_TIMEOUT_S),
            ]
        },
        on_start=[lambda: restore_backup_gauge(settings.backup_dir)],
    )


__all__ = ("worker_part",)
