"""Autosave rules on the API side: validate, store the newest version in Redis, enqueue a flush.

Nothing here writes Postgres: the worker does (see ``flush``). Reads merge both, Redis first, so
a draft saved through one API process reads back through any other before it is flushed.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import msgspec
from redis.exceptions import RedisError
from saq.job import Job, Status

from app.autosave.cursor import decode_cursor, encode_cursor
from app.autosave.store import CONFLICT, NEEDS_SEED, NOT_OWNER, RATE_LIMITED, DraftStore, FlushJob, Snapshot
from app.config import Settings
from app.db import Database
from app.errors import ApiError, not_found, unavailable
from app.queue import AUTOSAVE
from app.queue.redis_queue import DraftwireQueue
from app.queue.worker import job_defaults
from app.ratelimit import Limit, refused
from observability import tracing
from observability.logging import get_logger
from observability.metrics import AUTOSAVE_PAYLOAD_BYTES, AUTOSAVE_REQUESTS, observe

log = get_logger(__name__)
_encode = msgspec.json.Encoder().encode

_TRACER = tracing.tracer("draftwire.autosave")


class _Outcomes(dict[str, Any]):
    """``autosave_requests_total`` children, each resolved on first use and then kept
    (``labels()`` per request costs a lock and a lookup)."""

    def __missing__(self, outcome: str) -> Any:
        child = self[outcome] = AUTOSAVE_REQUESTS.labels(outcome)
        return child


_OUTCOMES = _Outcomes()
MAX_JSON_DEPTH = 64
UUID_PATTERN = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
"""A draft id as clients send it (the OpenAPI document uses the same pattern)."""
MAX_VERSION = 2**63 - 1
"""Versions are Postgres bigints."""
FLUSH_FUNCTION = "flush_draft"
FLUSH_LEAD_S = 0.02
"""How much sooner than the end of the coalescing window a flush starts: about the flush's own
p95 (the schedule tick, the batch write), so that the row lands when the window ends instead of
after it (docs/decisions/0002-autosave-write-behind.md, addendum)."""


def write_delay(window: float) -> float:
    """When, after a draft's oldest unwritten save, its flush starts: ``AUTOSAVE_FLUSH_DELAY`` less
    the flush's own time (:data:`FLUSH_LEAD_S`, at most a tenth of the window)."""
    return window - min(FLUSH_LEAD_S, window / 10)


@dataclass(frozen=True, slots=True)
class SaveRequest:
    draft_id: str | None
    title: str
    payload_json: str
    payload_bytes: int
    base_version: int | None


@dataclass(frozen=True, slots=True)
class SaveResult:
    draft_id: str
    version: int
    job_id: str


JOB_PREFIX = "draft:"


def job_key(user_id: str, draft_id: str) -> str:
    """The flush job's id and dedupe key (contract: ``draft:<userId>:<draftId>``)."""
    return f"{JOB_PREFIX}{user_id}:{draft_id}"


async def enqueue_flush(
    queue: DraftwireQueue, defaults: dict[str, Any], user_id: str, draft_id: str, due: float
) -> bool:
    """Enqueue a flush of the draft due at ``due`` (epoch s); False when one is already waiting."""
    job = await queue.enqueue(
        FLUSH_FUNCTION,
        key=job_key(user_id, draft_id),
        scheduled=max(due, time.time()),
        user_id=user_id,
        draft_id=draft_id,
        **defaults,
    )
    return job is not None


def _reject(status: int, code: str, detail: str, outcome: str) -> ApiError:
    _OUTCOMES[outcome].inc()
    return ApiError(status, code, detail)


def _depth(value: Any, limit: int) -> int:
    """Nesting depth of decoded JSON, stopping once past ``limit``."""
    stack = [(value, 1)]
    deepest = 0
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        if deepest > limit:
            return deepest
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values())
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node)
    return deepest


def parse_save(body: bytes, settings: Settings) -> SaveRequest:
    """Validate a raw request body into a :class:`SaveRequest` or raise the contract's 4xx."""
    try:
        doc = msgspec.json.decode(body)
    except (msgspec.DecodeError, RecursionError):
        raise _reject(400, "malformed_json", "The body is not valid JSON; send a JSON object.", "malformed") from None
    if not isinstance(doc, dict):
        raise _reject(400, "malformed_json", "The body must be a JSON object with title and payload.", "malformed")

    draft_id = doc.get("draftId")
    if draft_id is not None:
        valid = isinstance(draft_id, str) and re.fullmatch(UUID_PATTERN, draft_id)
        draft_id = str(uuid.UUID(draft_id)) if valid else None
        if draft_id is None:
            raise _reject(
                422, "invalid_draft_id", "draftId must be a UUID string, or left out for a new draft.", "invalid"
            )

    title = doc.get("title")
    if not isinstance(title, str) or not title.strip():
        raise _reject(422, "invalid_title", "title is required and must be a non-empty string.", "invalid")
    if len(title) > settings.autosave_max_title_chars:
        raise _reject(
            422,
            "invalid_title",
            f"title is {len(title)} characters; the limit is {settings.autosave_max_title_chars}.",
            "invalid",
        )

    payload = doc.get("payload")
    if not isinstance(payload, dict):
        raise _reject(422, "invalid_payload", "payload is required and must be a JSON object.", "invalid")
    if _depth(payload, MAX_JSON_DEPTH) > MAX_JSON_DEPTH:
        raise _reject(422, "invalid_payload", f"payload nests deeper than {MAX_JSON_DEPTH} levels.", "invalid")
    encoded = _encode(payload)  # compact UTF-8, as json.dumps(ensure_ascii=False) wrote it, 10x faster
    size = len(encoded)
    payload_json = encoded.decode()
    if size > settings.autosave_max_payload_bytes:
        raise _reject(
            413,
            "payload_too_large",
            f"payload is {size} bytes serialized; the limit is {settings.autosave_max_payload_bytes}.",
            "too_large",
        )

    base_version = doc.get("baseVersion")
    if isinstance(base_version, float) and base_version.is_integer():
        base_version = int(base_version)  # JSON Schema's integer: 7.0 is 7
    if base_version is not None and (
        isinstance(base_version, bool) or not isinstance(base_version, int) or not 0 <= base_version <= MAX_VERSION
    ):
        raise _reject(422, "invalid_base_version", f"baseVersion must be a whole number 0..{MAX_VERSION}.", "invalid")

    return SaveRequest(draft_id, title, payload_json, size, base_version)


class AutosaveService:
    def __init__(self, *, settings: Settings, store: DraftStore, db: Database, queue: DraftwireQueue) -> None:
        self.settings = settings
        self.store = store
        self.db = db
        self.queue = queue
        self._job_defaults = job_defaults(settings.worker_task_timeout, settings.job_max_attempts)
        self._limit = Limit("autosave", settings.autosave_rate_limit_per_minute, 60)
        self._write_delay = write_delay(settings.autosave_flush_delay)

    async def save(self, user_id: str, request: SaveRequest) -> SaveResult:
        draft_id = request.draft_id or str(uuid.uuid4())
        key = job_key(user_id, draft_id)
        now = time.time()
        limit = self._limit
        # A new draft (no id given) starts at version 0 without asking Postgres.
        seed: int | None = 0 if request.draft_id is None else None
        with _TRACER.start_as_current_span(
            "autosave enqueue", attributes={"messaging.destination.name": AUTOSAVE, "messaging.message.id": key}
        ):
            flush = self._flush_job(key, user_id, draft_id, now)
            for _ in range(2):
                try:
                    status, value, _enqueued = await self.store.save(
                        draft_id=draft_id,
                        owner=user_id,
                        title=request.title,
                        payload=request.payload_json,
                        base_version=request.base_version,
                        now_ms=int(now * 1000),
                        seed_version=seed,
                        limit=limit,
                        flush=flush,
                    )
                except RedisError as exc:
                    _OUTCOMES["unavailable"].inc()
                    log.error("autosave_store_failed", error=type(exc).__name__)
                    raise unavailable(
                        "queue_unavailable", "Saving is unavailable right now (queue store down); retry shortly."
                    ) from None
                if status != NEEDS_SEED:
                    break
                seed = await self._seed_from_postgres(user_id, draft_id)
        if status == RATE_LIMITED:
            _OUTCOMES["rate_limited"].inc()
            raise refused(limit, value, "/api/autosave")
        if status == NOT_OWNER:
            _OUTCOMES["not_found"].inc()
            raise not_found("draft")
        if status == CONFLICT:
            _OUTCOMES["conflict"].inc()
            raise ApiError(
                409,
                "version_conflict",
                f"The draft is at version {value}, newer than baseVersion {request.base_version};"
                f" reload it, merge, and save with baseVersion {value}.",
            )
        observe(AUTOSAVE_PAYLOAD_BYTES, request.payload_bytes)
        _OUTCOMES["accepted"].inc()
        log.info("autosave_enqueued", job_id=key, queue=AUTOSAVE, version=value)
        return SaveResult(draft_id, value, key)

    def _flush_job(self, key: str, user_id: str, draft_id: str, now: float) -> FlushJob:
        """The flush job as SAQ would store it, due when its write should start (``write_delay``)."""
        due = now + self._write_delay
        job = Job(
            function=FLUSH_FUNCTION,
            kwargs={"user_id": user_id, "draft_id": draft_id},
            queue=self.queue,
            key=key,
            scheduled=due,  # type: ignore[arg-type]  # SAQ keeps sub-second floats as they are
            queued=int(now * 1000),
            status=Status.QUEUED,
            meta={"trace": tracing.inject()},
            **self._job_defaults,
        )
        return FlushJob(job.id, job.abort_id, self.queue.namespace("incomplete"), self.queue.serialize(job), due)

    async def _postgres_owner(self, draft_id: str) -> dict[str, Any] | None:
        """Owner and version of a written draft in one round trip (``draft_owner`` sees past RLS);
        every first save of a draft Redis does not hold waits on it."""
        async with self.db.autocommit("drafts.owner") as conn:
            cur = await conn.execute("SELECT owner_user_id, version FROM draft_owner(%s)", (draft_id,), prepare=True)
            return await cur.fetchone()

    async def _seed_from_postgres(self, user_id: str, draft_id: str) -> int:
        """The version Postgres holds for a draft Redis has forgotten (0 when new)."""
        row = await self._postgres_owner(draft_id)
        if row is None:
            return 0
        if row["owner_user_id"] != user_id:
            _OUTCOMES["not_found"].inc()
            raise not_found("draft")
        return int(row["version"])

    async def get(self, user_id: str, draft_id: str) -> dict[str, Any]:
        snap = await self._snapshot(draft_id)
        if snap is not None:
            if snap.owner != user_id:
                raise not_found("draft")
            return _snapshot_view(snap)
        async with self.db.user_tx(user_id, "drafts.get") as conn:
            cur = await conn.execute(
                "SELECT id::text AS id, title, payload::text AS payload, version, updated_at"
                " FROM spec_drafts WHERE id = %s",
                (draft_id,),
            )
            row = await cur.fetchone()
        if row is None:
            raise not_found("draft")
        return {
            "draftId": row["id"],
            "title": row["title"],
            "payload": msgspec.Raw(row["payload"].encode()),
            "version": row["version"],
            "updatedAt": _iso(row["updated_at"]),
            "persisted": True,
        }

    async def owner_of(self, draft_id: str) -> str | None:
        """The owner of a draft id, Redis first (a draft saved a moment ago counts), then
        Postgres ``draft_owner(id)``; None for malformed or unknown ids."""
        try:
            draft_id = str(uuid.UUID(draft_id))
        except ValueError:
            return None
        owner = await self.store.owner(draft_id)
        if owner is not None:
            return owner
        row = await self._postgres_owner(draft_id)
        return row["owner_user_id"] if row else None

    async def flush_job_owner(self, job_id: str) -> str | None:
        """The user of a flush job id ``draft:<userId>:<draftId>``, if that draft is theirs."""
        owner, sep, draft_id = job_id.removeprefix(JOB_PREFIX).rpartition(":")
        if not (job_id.startswith(JOB_PREFIX) and sep and owner and draft_id):
            return None
        return owner if await self.owner_of(draft_id) == owner else None

    async def health(self, redis_ok: bool) -> dict[str, Any]:
        """The ``autosave`` section of ``GET /health``: backlog and the last flush (unknown
        while Redis does not answer)."""
        unknown: dict[str, Any] = {"pending": None, "lastFlushAt": None, "lastFlushOk": None}
        if not redis_ok:
            return unknown
        try:
            async with asyncio.timeout(0.5):
                return {"pending": await self.store.pending(), **await self.store.last_flush()}
        except Exception:
            return unknown

    async def _snapshot(self, draft_id: str) -> Snapshot | None:
        try:
            return await self.store.get(draft_id)
        except Exception as exc:
            log.warning("autosave_read_fallback", error=type(exc).__name__)
            return None

    async def list(self, user_id: str, limit: int, cursor: str | None) -> dict[str, Any]:
        """Own drafts, newest first: unwritten ones from Redis on the first page, then Postgres."""
        after = decode_cursor(cursor) if cursor else None
        dirty_ids = await self.store.user_dirty(user_id, 1000)
        items: list[dict[str, Any]] = []
        if after is None and dirty_ids:
            snaps = [s for s in await self.store.get_many(dirty_ids[:limit]) if s and s.owner == user_id]
            items = [
                {"draftId": s.draft_id, "title": s.title, "version": s.version, "updatedAt": _iso_ms(s.updated_at_ms)}
                for s in snaps
            ]
        query = (
            "SELECT id::text AS id, title, version, updated_at FROM spec_drafts"
            " WHERE NOT (id::text = ANY(%s))"
            + (" AND (updated_at, id) < (%s, %s)" if after else "")
            + " ORDER BY updated_at DESC, id DESC LIMIT %s"
        )
        params: list[Any] = [dirty_ids]
        if after:
            params += [after[0], after[1]]
        params.append(limit + 1)
        async with self.db.user_tx(user_id, "drafts.list") as conn:
            cur = await conn.execute(query, params)
            rows = await cur.fetchall()
        room = max(0, limit - len(items))
        page, more = rows[:room], len(rows) > room
        items += [
            {"draftId": r["id"], "title": r["title"], "version": r["version"], "updatedAt": _iso(r["updated_at"])}
            for r in page
        ]
        next_cursor = encode_cursor(page[-1]["updated_at"], page[-1]["id"]) if more and page else None
        if more and not page:  # the first page was all unwritten drafts: continue from the top of Postgres
            next_cursor = encode_cursor(datetime.max.replace(tzinfo=UTC), "ffffffff-ffff-ffff-ffff-ffffffffffff")
        return {"items": items, "nextCursor": next_cursor}


def _snapshot_view(snap: Snapshot) -> dict[str, Any]:
    return {
        "draftId": snap.draft_id,
        "title": snap.title,
        "payload": msgspec.Raw(snap.payload.encode()),
        "version": snap.version,
        "updatedAt": _iso_ms(snap.updated_at_ms),
        "persisted": snap.persisted,
    }


def _iso(ts: datetime) -> str:
    utc = ts.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def _iso_ms(ms: int) -> str:
    return _iso(datetime.fromtimestamp(ms / 1000, tz=UTC))
