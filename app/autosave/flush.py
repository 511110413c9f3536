"""The worker side of autosave: coalesced, batched writes of the newest versions to Postgres.

Each ``flush_draft`` job hands its draft to the process's :class:`FlushBatcher`. The batcher
writes every draft handed to it meanwhile, plus other drafts already due, up to
``AUTOSAVE_BATCH_SIZE`` per round trip: one transaction, statements pipelined, one upsert per
owner (RLS needs the owner set), each followed in the same statement by its ``draft.saved``
event. A version is only written if newer than the row's, so a replayed job is harmless.

A per-draft lease in Redis keeps two workers from flushing one draft at once. A save that lands
while its draft is being written stays dirty; :meth:`FlushFollowUp.after_process` enqueues its
next flush, and :meth:`FlushFollowUp.sweep` catches anything stranded (an enqueue lost to a Redis blip, a worker
killed between steps, a flush that ran out of attempts while Postgres was down).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from saq.job import Status

from app.autosave.service import FLUSH_FUNCTION, enqueue_flush, job_key
from app.autosave.store import DraftStore, FlushJobKeys, Snapshot
from app.db import Database
from app.events import Event, EventPublisher, utc_iso_ms
from app.parts import LoopService
from app.queue.names import AUTOSAVE
from app.queue.redis_queue import COMPLETED_TTL_SECONDS, DraftwireQueue
from observability import tracing
from observability.logging import get_logger
from observability.metrics import (
    AUTOSAVE_DB_WRITES,
    AUTOSAVE_FLUSH_BATCH_SIZE,
    AUTOSAVE_FLUSH_DURATION,
    AUTOSAVE_FLUSH_FAILURES,
    AUTOSAVE_SAVES_COALESCED,
    JOBS_PROCESSED,
    observe,
)

log = get_logger(__name__)

LEASE_MS = 10_000
"""A batch's per-draft flush lease. It only saves duplicate work: writes are version-guarded
(``WHERE version < excluded.version``), so a batch that outlives its lease and one that takes the
draft over cannot roll a draft back or announce a version twice. Twice the default statement
timeout (``DB_QUERY_TIMEOUT``, 5 s), and shorter than the stalled-job window (11 s): the draft a
killed worker was writing is free again by the time its job is retried."""
MAX_BATCHES_IN_FLIGHT = 4
LEASE_WAIT_S = 20.0
"""How long a batch waits for a draft leased by another batch (of this process or another
worker); then the job fails and is retried."""

_UPSERT = """
WITH input AS (
    SELECT * FROM jsonb_to_recordset(%s::jsonb)
        AS r(id uuid, title text, payload jsonb, version bigint, created_at timestamptz, updated_at timestamptz)
), up AS (
    INSERT INTO spec_drafts AS d (id, owner_user_id, title, payload, version, created_at, updated_at)
    SELECT id, current_setting('app.current_user_id'), title, payload, version, created_at, updated_at FROM input
    ON CONFLICT (id) DO UPDATE
        SET title = excluded.title, payload = excluded.payload,
            version = excluded.version, updated_at = excluded.updated_at
        WHERE d.version < excluded.version
    RETURNING d.id, d.version
)
SELECT up.id::text AS id, up.version, e.seq, e.created_at
FROM up, LATERAL publish_event('draft:' || up.id::text, 'draft.saved',
                               jsonb_build_object('version', up.version)) AS e
"""


def _row_json(snap: Snapshot) -> str:
    # The payload is already JSON text: splice it in rather than parse and re-encode 500 KB.
    return (
        '{"id":"%s","title":%s,"payload":%s,"version":%d,"created_at":"%s","updated_at":"%s"}'  # noqa: UP031 - splices JSON text; %-format is clearest
        % (
            snap.draft_id,
            json.dumps(snap.title, ensure_ascii=False),
            snap.payload,
            snap.version,
            _ts(snap.created_at_ms),
            _ts(snap.updated_at_ms),
        )
    )


def _ts(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat()


@dataclass
class _Request:
    draft_id: str
    future: asyncio.Future[None]
    carrier: dict[str, str] = field(default_factory=dict)


class FlushBatcher(LoopService):
    """Collects drafts from concurrent jobs and writes them in batches."""

    task_name = "autosave-batcher"

    def __init__(
        self,
        *,
        db: Database,
        store: DraftStore,
        events: EventPublisher,
        batch_size: int,
        flush_delay: float,
        queue: DraftwireQueue,
    ) -> None:
        super().__init__()
        self.jobs = FlushJobKeys(
            incomplete_key=queue.namespace("incomplete"),
            queued_key=queue.namespace("queued"),
            completed_key=queue.completed_key,
            ttl=COMPLETED_TTL_SECONDS,
            job_id=lambda owner, draft_id: queue.job_id(job_key(owner, draft_id)),
        )
        self.db = db
        self.store = store
        self.events = events
        self.batch_size = batch_size
        self.flush_delay = flush_delay
        self._inbox: asyncio.Queue[_Request] = asyncio.Queue()
        self._writing: dict[str, asyncio.Future[None]] = {}
        """Drafts a batch of this process holds the lease of, and that batch's end."""
        self._token = uuid.uuid4().hex

    async def flush(self, draft_id: str) -> None:
        """Return once the draft's newest version (as of now) is in Postgres; raise if not."""
        request = _Request(draft_id, asyncio.get_running_loop().create_future(), tracing.inject())
        await self._inbox.put(request)
        await request.future

    async def main(self) -> None:
        # Up to MAX_BATCHES_IN_FLIGHT batches at once: a batch mostly waits on round trips, and
        # the per-draft leases keep concurrent batches from writing the same draft.
        slots = asyncio.Semaphore(MAX_BATCHES_IN_FLIGHT)
        running: set[asyncio.Task[None]] = set()
        while True:
            batch = [await self._inbox.get()]
            while len(batch) < self.batch_size and not self._inbox.empty():
                batch.append(self._inbox.get_nowait())
            await slots.acquire()
            task = asyncio.create_task(self._settle(batch))
            running.add(task)
            task.add_done_callback(running.discard)
            task.add_done_callback(lambda _: slots.release())

    async def _settle(self, batch: list[_Request]) -> None:
        try:
            await self._write_batch(batch)
        except Exception as exc:
            for request in batch:
                if not request.future.done():
                    request.future.set_exception(exc)
        else:
            for request in batch:
                if not request.future.done():
                    request.future.set_result(None)

    async def _write_batch(self, requests: list[_Request]) -> None:
        ids = list(dict.fromkeys(r.draft_id for r in requests))
        carrier = requests[0].carrier
        # Lease the requested drafts and fill the batch with other drafts already due (their
        # pending jobs are completed with them), snapshots included: one round trip.
        got = await self.store.claim(
            ids,
            token=self._token,
            lease_ms=LEASE_MS,
            due_before_ms=int((time.time() - self.flush_delay) * 1000),
            capacity=self.batch_size,
        )
        claimed = got.leased
        waiting = [d for d in ids if d not in claimed and d not in got.clean]
        _resolve(requests, got.clean)  # nothing owed: free their worker slots before any write
        await self._write_leased(claimed, carrier)
        _resolve(requests, claimed)
        # Other batches hold the rest: wait for them holding no lease (two batches that waited on
        # each other's drafts stalled every flush for LEASE_WAIT_S, seen at 300 saves/s), then
        # write what is left; a draft leased again meanwhile (a newer save) is waited for again.
        deadline = time.monotonic() + LEASE_WAIT_S
        while waiting:
            if time.monotonic() > deadline:
                raise TimeoutError("other batches kept the flush lease too long")
            await self._await_holders(waiting)
            more = await self.store.claim(
                waiting, token=self._token, lease_ms=LEASE_MS, due_before_ms=0, capacity=len(waiting)
            )
            await self._write_leased(more.leased, carrier)
            waiting = [d for d in waiting if d not in more.leased and d not in more.clean]

    async def _write_leased(self, claimed: dict[str, Snapshot | None], carrier: dict[str, str]) -> None:
        """Write the drafts this batch holds the lease of, then release them."""
        if not claimed:
            return
        done = asyncio.get_running_loop().create_future()
        for draft_id in claimed:
            self._writing[draft_id] = done
        released = False
        try:
            released = await self._write([s for s in claimed.values() if s is not None], carrier,
                                         lease=list(claimed))
        finally:
            try:
                if not released:  # nothing written, or the write failed: give the leases back alone
                    await self.store.release(list(claimed), self._token)
            finally:
                # Even when the release fails (its leases then expire on their own), this
                # process's batches waiting on ours must not wait for a future nobody resolves.
                for draft_id in claimed:
                    if self._writing.get(draft_id) is done:
                        del self._writing[draft_id]
                done.set_result(None)

    async def _await_holders(self, ids: list[str]) -> None:
        """Until the batches holding ``ids`` are done: this process's by their end (no polling),
        another worker's by polling their leases."""
        ours = {id(f): f for d in ids if (f := self._writing.get(d)) is not None}
        remote = [d for d in ids if d not in self._writing]
        if ours:
            _, unfinished = await asyncio.wait(list(ours.values()), timeout=LEASE_WAIT_S)
            if unfinished:
                raise TimeoutError("another batch of this worker kept the flush lease too long")
        if remote:
            await self._await_leases(remote)

    async def _await_leases(self, ids: list[str], timeout: float = LEASE_WAIT_S) -> None:  # noqa: ASYNC109 - a bounded wait is the point
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not await self.store.leased(ids):
                return
            await asyncio.sleep(0.02)
        raise TimeoutError("another worker kept the flush lease too long")

    async def _write(self, claimed: list[Snapshot], carrier: dict[str, str], *, lease: list[str]) -> bool:
        """Write the unpersisted snapshots; True when the batch's ``lease`` was given back with
        the write's bookkeeping (one round trip), False when there was nothing to write."""
        snaps = [s for s in claimed if not s.persisted]
        if not snaps:
            return False
        by_owner: dict[str, list[Snapshot]] = {}
        for snap in snaps:
            by_owner.setdefault(snap.owner, []).append(snap)
        tracer = tracing.tracer("draftwire.autosave")
        start = time.perf_counter()
        events: list[Event] = []
        with tracer.start_as_current_span(
            "autosave flush batch",
            context=tracing.extract(carrier),
            attributes={"draftwire.autosave.batch_size": len(snaps), "db.system": "postgresql"},
        ):
            statements: list[str] = []
            params: list[str] = []
            for owner, group in by_owner.items():
                statements += ["SELECT set_config('app.current_user_id', %s, true)", _UPSERT]
                params += [owner, "[" + ",".join(_row_json(s) for s in group) + "]"]
            try:
                # One round trip, one transaction: RLS sees each owner's rows under its own setting.
                for result in await self.db.script("autosave.flush", statements, params):
                    events += [
                        Event(
                            f"draft:{row['id']}",
                            int(row["seq"]),
                            "draft.saved",
                            {"version": int(row["version"])},
                            utc_iso_ms(row["created_at"]),
                        )
                        for row in result
                        if "seq" in row
                    ]
            except Exception as exc:
                AUTOSAVE_FLUSH_FAILURES.inc()
                await _quietly(self.store.record_flush(at_iso=_now_iso(), ok=False))
                log.error("autosave_flush_failed", error=type(exc).__name__, batch_size=len(snaps))
                raise
            elapsed = time.perf_counter() - start
            observe(AUTOSAVE_FLUSH_DURATION, elapsed)
            observe(AUTOSAVE_FLUSH_BATCH_SIZE, len(snaps))
            AUTOSAVE_DB_WRITES.inc(len(events))
            AUTOSAVE_SAVES_COALESCED.inc(sum(max(0, s.version - s.persisted_version - 1) for s in snaps))
            marks = await self.store.mark_persisted(
                snaps, self.jobs, announcements=self.events.announcements(events), flushed_at=_now_iso(),
                release=(self._token, lease),
            )
            # Pending flush jobs of drafts this batch already wrote were completed in Redis.
            JOBS_PROCESSED.labels(AUTOSAVE, "done").inc(marks.count(2))
            log.info(
                "autosave_flushed",
                queue="draft-autosave",
                batch_size=len(snaps),
                rows_written=len(events),
                latency_ms=round(elapsed * 1000, 2),
            )
        return True


def _resolve(requests: list[_Request], done: Any) -> None:
    """Finish the jobs of ``requests`` whose draft is in ``done`` (their worker slots are free)."""
    for request in requests:
        if request.draft_id in done and not request.future.done():
            request.future.set_result(None)


async def _quietly(awaitable: Any) -> None:
    with contextlib.suppress(Exception):
        await awaitable


def _now_iso() -> str:
    return utc_iso_ms(datetime.now(UTC))


def flush_handler(batcher: FlushBatcher) -> Any:
    """The ``flush_draft`` job function bound to this process's batcher."""

    async def flush_draft(ctx: dict[str, Any], *, user_id: str, draft_id: str) -> dict[str, Any]:
        await batcher.flush(draft_id)
        return {"draftId": draft_id}

    return flush_draft


class FlushFollowUp(LoopService):
    """Keeps every dirty draft on its way to Postgres, whatever happened to its job."""

    task_name = "autosave-sweeper"

    def __init__(
        self, *, queue: DraftwireQueue, store: DraftStore, db: Database, flush_delay: float, defaults: dict[str, Any]
    ) -> None:
        super().__init__()
        self.queue = queue
        self.store = store
        self.db = db
        self.flush_delay = flush_delay
        self.defaults = defaults

    async def after_process(self, ctx: dict[str, Any]) -> None:
        """After a flush job finished: if a save arrived while it ran, enqueue the next flush
        (the job's key is free again). Saves after this point enqueue their own."""
        job = ctx.get("job")
        if job is None or job.function != FLUSH_FUNCTION or job.status != Status.COMPLETE:
            return
        kwargs = job.kwargs or {}
        since_ms = await self.store.dirty_since(kwargs["draft_id"])
        if since_ms is not None:
            await enqueue_flush(
                self.queue, self.defaults, kwargs["user_id"], kwargs["draft_id"], since_ms / 1000 + self.flush_delay
            )

    async def sweep(self, grace: float = 5.0, limit: int = 500) -> int:
        """Enqueue flushes for drafts dirty for longer than the window plus ``grace``: their
        enqueue was lost, or their job ran out of attempts (retried once Postgres answers)."""
        if not await self.store.take_sweep_turn(int(grace * 1000 / 2)):
            return 0
        due = await self.store.due(int((time.time() - self.flush_delay - grace) * 1000), limit)
        revived = 0
        db_up: bool | None = None
        found = [(d, snap.owner) for d, snap in zip(due, await self.store.get_many(due), strict=True) if snap]
        # One MGET for all their jobs: after an outage the backlog is large and mostly healthy.
        jobs = await self.queue.jobs(job_key(owner, d) for d, owner in found) if found else []
        for (draft_id, owner), job in zip(found, jobs, strict=True):
            if job is None or job.status in (Status.COMPLETE, Status.ABORTED):
                revived += await enqueue_flush(self.queue, self.defaults, owner, draft_id, time.time())
            elif job.status == Status.FAILED:
                if db_up is None:
                    db_up = await _answers(self.db)
                if db_up:
                    revived += (await self.queue.retry_failed(job.key)) is not None
        if revived:
            log.info("autosave_sweep_requeued", queue="draft-autosave", count=revived)
        return revived

    async def main(self, every: float = 2.0) -> None:
        while True:
            try:
                await self.sweep()
            except Exception as exc:
                log.warning("autosave_sweep_failed", error=type(exc).__name__)
            await asyncio.sleep(every)


async def _answers(db: Database) -> bool:
    try:
        await db.ping()
    except Exception:
        return False
    return True
