"""SQL migrations: ``migrations/NNN_name.sql`` applied in order, each in its own transaction,
recorded in ``schema_migrations``. An advisory lock lets several processes start at once."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from typing import Any

import psycopg

MIGRATIONS_PACKAGE = "app.db"
_LOCK_KEY = 7_312_024  # pg_advisory_lock key for "draftwire migrations"


@dataclass(frozen=True)
class Migration:
    version: str
    name: str
    sql: str


def available() -> list[Migration]:
    """Every migration shipped with the package, in order."""
    folder = resources.files(MIGRATIONS_PACKAGE).joinpath("migrations")
    found = sorted((f for f in folder.iterdir() if f.name.endswith(".sql")), key=lambda f: f.name)
    return [Migration(f.name.split("_", 1)[0], f.name, f.read_text("utf-8")) for f in found]


async def applied(conn: psycopg.AsyncConnection[Any]) -> set[str]:
    """Versions recorded in ``schema_migrations`` (empty when the table does not exist yet)."""
    cur = await conn.execute("SELECT to_regclass('public.schema_migrations') IS NOT NULL")
    row = await cur.fetchone()
    if not row or not row[0]:
        return set()
    cur = await conn.execute("SELECT version FROM schema_migrations")
    return {r[0] for r in await cur.fetchall()}


async def pending(database_url: str) -> list[Migration]:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        done = await applied(conn)
    return [m for m in available() if m.version not in done]


async def migrate(database_url: str, progress: object = print) -> list[str]:
    """Apply pending migrations; return the names applied. ``progress`` gets one line each."""
    names: list[str] = []
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))
        try:
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version text PRIMARY KEY, name text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = await applied(conn)
            for migration in available():
                if migration.version in done:
                    continue
                async with conn.transaction():
                    await conn.execute(migration.sql.encode())
                    await conn.execute(
                        "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                        (migration.version, migration.name),
                    )
                names.append(migration.name)
                if callable(progress):
                    progress(f"applied {migration.name}")
        finally:
            await conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))
    return names
