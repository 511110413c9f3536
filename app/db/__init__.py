"""Postgres access: one async pool per process, every connection running as ``draftwire_app``.

``DATABASE_URL`` may name the schema owner or a superuser; :func:`_configure` switches each pooled
connection to the application role (neither owner nor superuser), so row-level security holds
whatever role the URL names. :meth:`Database.user_tx` sets ``app.current_user_id`` for one
transaction; RLS then shows and accepts only that user's rows.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from opentelemetry import trace
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from observability.metrics import DB_QUERY_DURATION, observe

__all__ = ("APP_ROLE", "Database")

APP_ROLE = "draftwire_app"
Conn = psycopg.AsyncConnection[dict[str, Any]]
_tracer = trace.get_tracer("draftwire.db")


class Database:
    """The process's pool plus the helpers every query goes through."""

    def __init__(self, *, url: str, statement_timeout: float, min_size: int = 2, max_size: int = 10) -> None:
        self.url = url
        self._timeout_ms = int(statement_timeout * 1000)
        self.pool: AsyncConnectionPool[Conn] = AsyncConnectionPool(
            url,
            min_size=min_size,
            max_size=max_size,
            open=False,
            kwargs={"row_factory": dict_row, "autocommit": True},
            configure=self._configure,
            timeout=max(statement_timeout, 1.0),
            name="draftwire",
        )
        self._prepared: list[tuple[str, tuple[Any, ...]]] = []

    def prepare_on_connect(self, query: str, sample: tuple[Any, ...]) -> None:
        """Prepare ``query`` on every new connection (run once with ``sample`` parameters), so
        that its first real use is as fast as the rest. For the few latency-critical reads;
        register before :meth:`open`."""
        if all(query != known for known, _ in self._prepared):
            self._prepared.append((query, sample))

    async def _configure(self, conn: Conn) -> None:
        # One round trip per new connection: role, timeout, and a name for pg_stat_activity.
        await conn.execute(
            f"SET ROLE {APP_ROLE}; SET statement_timeout = {self._timeout_ms};"
            " SET application_name = 'draftwire'"
        )
        if self._prepared:
            async with conn.pipeline():  # every registered query prepared in one more round trip
                for query, sample in self._prepared:
                    await conn.execute(query, sample, prepare=True)

    async def open(self, wait: bool = False) -> None:
        """Open the pool; with ``wait`` block until ``min_size`` connections exist."""
        await self.pool.open(wait=wait, timeout=10)

    async def close(self) -> None:
        await self.pool.close()

    @asynccontextmanager
    async def user_tx(self, user_id: str, operation: str) -> AsyncIterator[Conn]:
        """A transaction in which RLS sees only ``user_id``'s rows; its time lands in
        ``db_query_duration_seconds{operation}``. Statements are pipelined: BEGIN, the user
        setting and the caller's first query leave in one round trip."""
        start = time.perf_counter()
        async with self.pool.connection() as conn, conn.pipeline(), conn.transaction():
            await conn.execute("SELECT set_config('app.current_user_id', %s, true)", (user_id,))
            yield conn
        observe(DB_QUERY_DURATION.labels(operation), time.perf_counter() - start)

    @asynccontextmanager
    async def tx(self, operation: str) -> AsyncIterator[Conn]:
        """A transaction with no user set: RLS tables show nothing. For events and jobs."""
        start = time.perf_counter()
        async with self.pool.connection() as conn, conn.transaction():
            yield conn
        observe(DB_QUERY_DURATION.labels(operation), time.perf_counter() - start)

    @asynccontextmanager
    async def autocommit(self, operation: str) -> AsyncIterator[Conn]:
        """A pooled connection with no transaction around it: each statement commits on its own.
        For a write that is one statement (a function call), one round trip instead of three."""
        start = time.perf_counter()
        async with self.pool.connection() as conn:
            yield conn
        observe(DB_QUERY_DURATION.labels(operation), time.perf_counter() - start)

    async def script(self, operation: str, statements: list[str], params: list[Any]) -> list[list[dict[str, Any]]]:
        """Run several statements in one round trip and one (implicit) transaction; return every
        statement's rows. Parameters are bound client-side (quoted by libpq), because the
        extended protocol takes one statement at a time; a failing statement rolls back all."""
        start = time.perf_counter()
        results: list[list[dict[str, Any]]] = []
        sql = ";\n".join(statements)
        # A client-binding cursor is not the instrumented one: give it its span by hand (the
        # statement text holds placeholders only, never the bound values).
        with _tracer.start_as_current_span(
            f"postgresql {operation}",
            kind=trace.SpanKind.CLIENT,
            attributes={"db.system": "postgresql", "db.statement": sql[:4000], "db.operation": operation},
        ):
            async with self.pool.connection() as conn:
                cur = psycopg.AsyncClientCursor(conn, row_factory=dict_row)
                await cur.execute(sql.encode(), params)
                while True:
                    results.append(await cur.fetchall() if cur.description else [])
                    if not cur.nextset():
                        break
        observe(DB_QUERY_DURATION.labels(operation), time.perf_counter() - start)
        return results

    async def ping(self) -> None:
        """``SELECT 1`` through the pool; raises on any failure."""
        start = time.perf_counter()
        async with self.pool.connection(timeout=1.0) as conn:
            await conn.execute("SELECT 1")
        observe(DB_QUERY_DURATION.labels("ping"), time.perf_counter() - start)
