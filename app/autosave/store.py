"""The Redis side of autosave: the newest version of each draft, and which drafts are dirty.

Layout (all keys under ``dw:``):

- ``dw:draft:<id>`` hash: owner, title, payload (JSON text), version, updated_at (ms),
  created_at (ms), persisted_version. No expiry while dirty; a day once written to Postgres.
- ``dw:autosave:dirty`` zset: draft id -> time (ms) of its oldest unwritten save.
- ``dw:autosave:dirty:<user>`` zset: the same per user, newest first, for the drafts list.
- ``dw:autosave:flushing:<id>``: a short lease held while one worker writes that draft.

Every change is one Lua script, so a save and its version number are atomic across API processes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from app.ratelimit import SLIDING_WINDOW_LUA, Limit, member
from app.redisconn import Pipelined, Script

DRAFT_PREFIX = "dw:draft:"
DIRTY = "dw:autosave:dirty"
USER_DIRTY_PREFIX = "dw:autosave:dirty:"
FLUSHING_PREFIX = "dw:autosave:flushing:"
LAST_FLUSH = "dw:autosave:last_flush"
SWEEP_LOCK = "dw:autosave:sweep-lock"
PERSISTED_CACHE_TTL_S = 86400

NEEDS_SEED = -1
RATE_LIMITED = -429
NOT_OWNER = -404
CONFLICT = -409

# One round trip per save: the per-user rate limit, the versioned write, the dirty marks and
# the flush job's enqueue, atomically. The enqueue mirrors SAQ 0.26's own enqueue script
# (saq/queue/redis.py: refuse while the key is incomplete or aborting, else SET + ZADD) so a
# save can never be stored without its flush being scheduled.
_SAVE = (
    SLIDING_WINDOW_LUA
    + """
local wait, now = rl_wait(KEYS[4], tonumber(ARGV[9]), tonumber(ARGV[10]))
if wait then return {-429, wait, 0} end
local owner = redis.call('HGET', KEYS[1], 'owner')
local version
if owner then
    if owner ~= ARGV[1] then return {-404, 0, 0} end
    version = tonumber(redis.call('HGET', KEYS[1], 'version'))
elseif ARGV[6] == '' then
    return {-1, 0, 0}
else
    version = tonumber(ARGV[6])
    redis.call('HSET', KEYS[1], 'persisted_version', ARGV[6], 'created_at', ARGV[8])
end
if ARGV[4] ~= '' and tonumber(ARGV[4]) < version then return {-409, version, 0} end
version = version + 1
redis.call('HSET', KEYS[1], 'owner', ARGV[1], 'title', ARGV[2], 'payload', ARGV[3],
           'version', version, 'updated_at', ARGV[5])
redis.call('PERSIST', KEYS[1])
redis.call('ZADD', KEYS[2], 'NX', ARGV[5], ARGV[7])
redis.call('ZADD', KEYS[3], ARGV[5], ARGV[7])
rl_admit(KEYS[4], now, tonumber(ARGV[9]), ARGV[11])
local enqueued = 0
if not redis.call('ZSCORE', KEYS[5], KEYS[6]) and redis.call('EXISTS', KEYS[7]) == 0 then
    redis.call('SET', KEYS[6], ARGV[12])
    redis.call('ZADD', KEYS[5], ARGV[13], KEYS[6])
    enqueued = 1
end
return {1, version, enqueued}
"""
)

_RELEASE_LEASES = """
local function release_leases(token, from)
    for k = from, #ARGV do
        local key = 'dw:autosave:flushing:' .. ARGV[k]
        if redis.call('GET', key) == token then redis.call('DEL', key) end
    end
end
"""
"""Give back the flush leases ``ARGV[from..]`` that ``token`` holds (a lease another batch took
after ours expired stays): shared by _MARK_PERSISTED and _RELEASE."""

# After a commit, for every written draft in one call: record the written version. When nothing
# newer is waiting the draft is clean, and a flush job still pending for it (scheduled or queued,
# not running) has nothing left to do: complete it here, so a batch that wrote 25 drafts does not
# leave 24 jobs to run as no-ops. Then publish the batch's announcements and stamp the last flush.
# Per draft: 0 (newer save waiting), 1 (clean) or 2 (clean, pending job completed).
# KEYS: dirty, incomplete, queued, completed index, last-flush hash.
# ARGV: now (s), now (ms), draft cache ttl, job ttl, flushed-at, n drafts, n announcements,
#       then n x (draft id, owner, version, job id), then m x (channel, message), then the lease
#       token and the drafts whose leases the batch gives back (saves a _RELEASE call after it).
_MARK_PERSISTED = _RELEASE_LEASES + """
local n, m = tonumber(ARGV[6]), tonumber(ARGV[7])
local codes = {}
for i = 0, n - 1 do
    local id, owner, w, job_id = ARGV[8 + 4*i], ARGV[9 + 4*i], tonumber(ARGV[10 + 4*i]), ARGV[11 + 4*i]
    local h = 'dw:draft:' .. id
    local v = tonumber(redis.call('HGET', h, 'version') or '0')
    local pv = tonumber(redis.call('HGET', h, 'persisted_version') or '0')
    if w > pv then redis.call('HSET', h, 'persisted_version', w) end
    local code = 0
    if v <= w then
        code = 1
        redis.call('ZREM', KEYS[1], id)
        redis.call('ZREM', 'dw:autosave:dirty:' .. owner, id)
        if v > 0 then redis.call('EXPIRE', h, ARGV[3]) end
        local score = redis.call('ZSCORE', KEYS[2], job_id)
        if score then
            local waiting = redis.call('LREM', KEYS[3], 1, job_id)
            if waiting > 0 or tonumber(score) > 0 then
                redis.call('ZREM', KEYS[2], job_id)
                local raw = redis.call('GET', job_id)
                if raw then
                    local job = cjson.decode(raw)
                    job['status'] = 'complete'
                    job['completed'] = tonumber(ARGV[2])
                    job['progress'] = 1.0
                    job['result'] = {coalesced = true}
                    redis.call('SETEX', job_id, ARGV[4], cjson.encode(job))
                end
                redis.call('ZADD', KEYS[4], ARGV[1], job_id)
                code = 2
            end
        end
    end
    codes[i + 1] = code
end
local base = 8 + 4 * n
for j = 0, m - 1 do
    redis.call('PUBLISH', ARGV[base + 2*j], ARGV[base + 2*j + 1])
end
if ARGV[5] ~= '' then redis.call('HSET', KEYS[5], 'at', ARGV[5], 'ok', '1') end
release_leases(ARGV[base + 2 * m], base + 2 * m + 1)
return codes
"""

# Claim drafts for one batch, in one round trip: lease the requested drafts, then fill the
# batch with other drafts already due, and return each leased draft's hash. Key names are built
# here from fixed prefixes (single Redis, not a cluster).
_CLAIM = """
local out = {}
local requested = {}
local function take(id)
    if redis.call('SET', 'dw:autosave:flushing:' .. id, ARGV[1], 'NX', 'PX', ARGV[2]) then
        table.insert(out, id)
        table.insert(out, redis.call('HGETALL', 'dw:draft:' .. id))
        return true
    end
    return false
end
local clean = {}
for i = 6, #ARGV do
    requested[ARGV[i]] = true
    if redis.call('ZSCORE', KEYS[1], ARGV[i]) then take(ARGV[i]) else table.insert(clean, ARGV[i]) end
end
local room = tonumber(ARGV[4]) - #out / 2
if room > 0 then
    for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[3], 'LIMIT', 0, ARGV[5])) do
        if room <= 0 then break end
        if not requested[id] and take(id) then room = room - 1 end
    end
end
return {out, clean}
"""

_RELEASE = _RELEASE_LEASES + """
release_leases(ARGV[1], 2)
return 0
"""


@dataclass(frozen=True, slots=True)
class FlushJob:
    """A serialized SAQ job for the save script to enqueue (see ``_SAVE``)."""

    job_id: str
    abort_id: str
    incomplete_key: str
    payload: str | bytes
    scheduled: float


@dataclass(frozen=True, slots=True)
class FlushJobKeys:
    """Where the autosave queue keeps its jobs (SAQ's layout), for :meth:`DraftStore.mark_persisted`."""

    incomplete_key: str
    queued_key: str
    completed_key: str
    ttl: int
    job_id: Callable[[str, str], str]
    """(owner, draft id) -> the SAQ job id of that draft's flush."""


@dataclass(frozen=True, slots=True)
class Claim:
    """What :meth:`DraftStore.claim` got: the leased drafts' snapshots (None: vanished), and the
    requested drafts that were clean (nothing to write, no lease taken)."""

    leased: dict[str, Snapshot | None]
    clean: frozenset[str]


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A draft as Redis holds it. ``payload`` is JSON text, passed through untouched."""

    draft_id: str
    owner: str
    title: str
    payload: str
    version: int
    persisted_version: int
    updated_at_ms: int
    created_at_ms: int

    @property
    def persisted(self) -> bool:
        return self.persisted_version >= self.version

    @classmethod
    def from_hash(cls, draft_id: str, raw: dict[bytes, bytes]) -> Snapshot | None:
        if not raw or b"version" not in raw:
            return None
        return cls(
            draft_id=draft_id,
            owner=raw[b"owner"].decode(),
            title=raw[b"title"].decode(),
            payload=raw[b"payload"].decode(),
            version=int(raw[b"version"]),
            persisted_version=int(raw.get(b"persisted_version", b"0")),
            updated_at_ms=int(raw[b"updated_at"]),
            created_at_ms=int(raw.get(b"created_at", raw[b"updated_at"])),
        )


class DraftStore:
    """All autosave reads and writes against Redis."""

    def __init__(self, redis: Redis, pipelined: Pipelined) -> None:
        self.redis = redis
        self._pipelined = pipelined
        """Where ``save`` runs: every autosave request makes that one call."""
        self._save = Script("autosave.save", _SAVE)
        self._mark = redis.register_script(_MARK_PERSISTED)
        self._release = redis.register_script(_RELEASE)
        self._claim = redis.register_script(_CLAIM)

    @property
    def scripts(self) -> list[str]:
        """Every Lua script this store runs (loaded into Redis at start-up, see Platform.warm_up)."""
        return [_SAVE, _MARK_PERSISTED, _RELEASE, _CLAIM]

    async def save(
        self,
        *,
        draft_id: str,
        owner: str,
        title: str,
        payload: str,
        base_version: int | None,
        now_ms: int,
        seed_version: int | None,
        limit: Limit,
        flush: FlushJob,
        created_at_ms: int | None = None,
    ) -> tuple[int, int, bool]:
        """Store a new version and enqueue its flush, atomically. Returns ``(status, value,
        enqueued)``: status 1 with the new version; NEEDS_SEED when Redis does not know the
        draft; NOT_OWNER; CONFLICT with the latest version; RATE_LIMITED with ms to wait."""
        keys = [DRAFT_PREFIX + draft_id, DIRTY, USER_DIRTY_PREFIX + owner, limit.key(owner),
                flush.incomplete_key, flush.job_id, flush.abort_id]
        args: list[Any] = [
            owner,
            title,
            payload,
            "" if base_version is None else base_version,
            now_ms,
            "" if seed_version is None else seed_version,
            draft_id,
            created_at_ms or now_ms,
            limit.window_ms,
            limit.requests,
            member(),
            flush.payload,
            flush.scheduled,
        ]
        result = await self._pipelined.run(self._save, keys, args)
        return int(result[0]), int(result[1]), bool(result[2])

    async def get(self, draft_id: str) -> Snapshot | None:
        return Snapshot.from_hash(draft_id, await self.redis.hgetall(DRAFT_PREFIX + draft_id))

    async def get_many(self, draft_ids: list[str]) -> list[Snapshot | None]:
        async with self.redis.pipeline(transaction=False) as pipe:
            for draft_id in draft_ids:
                pipe.hgetall(DRAFT_PREFIX + draft_id)
            raws = await pipe.execute()
        return [Snapshot.from_hash(d, r) for d, r in zip(draft_ids, raws, strict=True)]

    async def owner(self, draft_id: str) -> str | None:
        raw = await self.redis.hget(DRAFT_PREFIX + draft_id, "owner")
        return raw.decode() if raw else None

    async def leased(self, draft_ids: list[str]) -> bool:
        """Whether any of these drafts is being written by some flush batch right now."""
        return bool(await self.redis.exists(*(FLUSHING_PREFIX + d for d in draft_ids)))

    async def take_sweep_turn(self, hold_ms: int) -> bool:
        """True for one caller (of all workers) per ``hold_ms``: whose turn it is to sweep."""
        return bool(await self.redis.set(SWEEP_LOCK, "1", nx=True, px=hold_ms))

    async def user_dirty(self, owner: str, limit: int) -> list[str]:
        """The user's unwritten drafts, most recently saved first."""
        ids = await self.redis.zrevrange(USER_DIRTY_PREFIX + owner, 0, limit - 1)
        return [i.decode() for i in ids]

    async def mark_persisted(
        self,
        written: list[Snapshot],
        jobs: FlushJobKeys,
        *,
        announcements: Sequence[tuple[str, str | bytes]] = (),
        flushed_at: str | None = None,
        release: tuple[str, Sequence[str]],
    ) -> list[int]:
        """After a commit, in one script call: record each written version (0 if a newer save is
        waiting, 1 if clean, 2 if clean and its pending flush job was completed here), publish the
        events' announcements, stamp the last flush and give back ``release``'s leases (token,
        draft ids) as :meth:`release` does."""
        now = time.time()
        args: list[Any] = [now, int(now * 1000), PERSISTED_CACHE_TTL_S, jobs.ttl, flushed_at or "",
                           len(written), len(announcements)]
        for snap in written:
            args += [snap.draft_id, snap.owner, snap.version, jobs.job_id(snap.owner, snap.draft_id)]
        for channel, message in announcements:
            args += [channel, message]
        args += [release[0], *release[1]]
        codes = await self._mark(
            keys=[DIRTY, jobs.incomplete_key, jobs.queued_key, jobs.completed_key, LAST_FLUSH], args=args
        )
        return [int(c) for c in codes]

    async def due(self, older_than_ms: int, limit: int) -> list[str]:
        """Dirty drafts whose oldest unwritten save is older than ``older_than_ms``."""
        ids = await self.redis.zrangebyscore(DIRTY, "-inf", older_than_ms, start=0, num=limit)
        return [i.decode() for i in ids]

    async def dirty_since(self, draft_id: str) -> float | None:
        """When the draft's oldest unwritten save arrived (ms), or None if it is clean."""
        score = await self.redis.zscore(DIRTY, draft_id)
        return None if score is None else float(score)

    async def pending(self) -> int:
        return int(await self.redis.zcard(DIRTY))

    async def claim(
        self, requested: list[str], *, token: str, lease_ms: int, due_before_ms: int, capacity: int
    ) -> Claim:
        """Lease the dirty ``requested`` drafts (those no other worker holds) and up to ``capacity``
        in all with other due drafts, with their snapshots; a requested draft that is clean is
        not leased (a batch already wrote it: its job has nothing left to do)."""
        raw, clean = await self._claim(
            keys=[DIRTY],
            args=[token, lease_ms, due_before_ms, capacity, capacity * 4, *requested],
        )
        claimed: dict[str, Snapshot | None] = {}
        for i in range(0, len(raw), 2):
            draft_id = raw[i].decode()
            fields = raw[i + 1]
            claimed[draft_id] = Snapshot.from_hash(draft_id, dict(zip(fields[::2], fields[1::2], strict=True)))
        return Claim(claimed, frozenset(d.decode() for d in clean))

    async def release(self, draft_ids: list[str], token: str) -> None:
        """Give back this worker's leases (one script call)."""
        if draft_ids:
            await self._release(keys=[], args=[token, *draft_ids])

    async def record_flush(self, *, at_iso: str, ok: bool) -> None:
        await self.redis.hset(LAST_FLUSH, mapping={"at": at_iso, "ok": "1" if ok else "0"})

    async def last_flush(self) -> dict[str, Any]:
        raw = await self.redis.hgetall(LAST_FLUSH)
        return {
            "lastFlushAt": raw[b"at"].decode() if raw.get(b"at") else None,
            "lastFlushOk": raw.get(b"ok", b"1") == b"1",
        }
