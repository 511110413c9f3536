"""Autosaves from many users while the worker is SIGKILLed again and again, each time while a
flush is in flight: every draft ends in Postgres at its last accepted version, none lost, none
rolled back, and the drafts a killed worker was writing are written again within the stalled
window.

Stalled window (app/queue/worker.py, app/autosave/flush.py): a dead worker's job is swept once
its heartbeat lease lapses (HEARTBEAT_S = 6 s) at the next sweep (SWEEP_EVERY_S = 5 s), so within
11 s; the draft it was writing stays leased for LEASE_MS = 10 s, so by then it is free and the
retried job writes it. RECOVERY_BOUND_S is the lease plus 15 s for the sweep, the retry and the
restart.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import datetime

from redis.asyncio import Redis

from app.autosave.flush import LEASE_MS
from app.autosave.store import FLUSHING_PREFIX
from app.queue.worker import HEARTBEAT_S, SWEEP_EVERY_S
from devstack.processes import ServiceProcess
from tests.chaos.conftest import FULL, ChaosStack, Saver, record

SAVES, USERS, KILLS = (10_000, 200, 10) if FULL else (600, 20, 2)
SAVE_SECONDS = 80.0 if FULL else 10.0
"""How long the saves are spread over (kills happen meanwhile)."""
STALLED_WINDOW_S = HEARTBEAT_S + SWEEP_EVERY_S
RECOVERY_BOUND_S = LEASE_MS / 1000 + 15


async def _kill_during_flush(stack: ChaosStack, worker: ServiceProcess, redis: Redis, saver: Saver,
                             stop: asyncio.Event) -> dict[str, object]:
    """Wait for a flush lease to appear, SIGKILL the worker at once, restart it; the leased
    drafts and their versions at that moment, and the kill time."""
    deadline = time.monotonic() + 30
    leased: list[str] = []
    while time.monotonic() < deadline and not stop.is_set():
        leased = [k.decode().removeprefix(FLUSHING_PREFIX) async for k in redis.scan_iter(f"{FLUSHING_PREFIX}*", 100)]
        if leased:
            break
        await asyncio.sleep(0.002)
    assert leased, "no flush was ever in flight to kill"
    worker.kill()
    killed, killed_wall = time.monotonic(), time.time()
    owed = {d: saver.latest.get(d, 0) for d in leased}
    await asyncio.to_thread(worker.start)
    return {"killed": killed, "killed_wall": killed_wall, "owed": owed}


def _swept_after(worker: ServiceProcess, kills: list[dict[str, object]]) -> list[float]:
    """Per kill, seconds until the first orphaned job was swept and retried (the worker's
    ``job_failed_retrying`` line with SAQ's stalled-job error), from the worker's log."""
    swept = sorted(datetime.fromisoformat(line["timestamp"]).timestamp() for line in worker.logs()
                   if line.get("msg") == "job_failed_retrying" and "stalled" in str(line.get("error")))
    out = []
    for kill in kills:
        at = float(kill["killed_wall"])  # type: ignore[arg-type]
        out.append(round(next((s - at for s in swept if s > at), float("nan")), 1))
    return out


async def _recovered(stack: ChaosStack, owed: dict[str, int], killed: float) -> float:
    """The moment (monotonic) every draft leased at the kill is written at least at the version
    accepted by then."""
    while True:
        stored = await stack.stored(list(owed))
        if all(stored.get(d, 0) >= v for d, v in owed.items()):
            return time.monotonic()
        assert time.monotonic() - killed < 10 * RECOVERY_BOUND_S, f"leased drafts not written: {owed} vs {stored}"
        await asyncio.sleep(0.2)


def _since_last_interruption(kill_times: list[float], done_at: list[float]) -> list[float]:
    """Per kill, seconds from the last kill that happened before its drafts were written (a later
    kill while they were being recovered starts their recovery over) to that moment."""
    return [done - max(k for k in kill_times if k <= done) for done in done_at]


async def test_worker_sigkilled_mid_flush_loses_nothing(chaos: ChaosStack, saver: Saver) -> None:
    """SAVES autosaves from USERS users; the worker SIGKILLed KILLS times, each while a flush lease
    is held (a batch is being written): afterwards every draft is in Postgres at its last accepted
    version, no draft's writes went backwards, and each kill's leased drafts were written again
    within RECOVERY_BOUND_S of the last kill that interrupted their recovery."""
    api = chaos.spawn("api")
    worker = chaos.spawn("worker")
    redis = Redis.from_url(chaos.redis.url)
    stop = asyncio.Event()
    per_user = SAVES // USERS
    spacing = SAVE_SECONDS / per_user
    users = [asyncio.create_task(saver.user_loop(lambda: api.url, f"chaos-{uuid.uuid4().hex[:8]}", per_user, 5,
                                                 spacing)) for _ in range(USERS)]
    kills: list[dict[str, object]] = []
    recoveries: list[asyncio.Task[float]] = []
    try:
        for _ in range(KILLS):
            await asyncio.sleep(SAVE_SECONDS / (KILLS + 1) * 0.8)
            kill = await _kill_during_flush(chaos, worker, redis, saver, stop)
            kills.append(kill)
            recoveries.append(asyncio.create_task(_recovered(chaos, kill["owed"], kill["killed"])))  # type: ignore[arg-type]
        await asyncio.gather(*users)
        done_at = await asyncio.gather(*recoveries)
        drained_s = await saver.all_persisted(within=RECOVERY_BOUND_S + 60)
    finally:
        stop.set()
        await redis.aclose()
    lost, rolled_back = await saver.losses()
    swept = _swept_after(worker, kills)
    kill_times = [float(k["killed"]) for k in kills]  # type: ignore[arg-type]
    recovery = [done - killed for done, killed in zip(done_at, kill_times, strict=True)]
    bounded = _since_last_interruption(kill_times, done_at)
    accepted = SAVES - sum(saver.refused.values())
    record("worker_sigkill", saves=SAVES, accepted=accepted, users=USERS, drafts=len(saver.latest), kills=len(kills),
           leased_at_kill=[len(k["owed"]) for k in kills], lost=lost, rolled_back=rolled_back,  # type: ignore[arg-type]
           recovery_s=[round(r, 1) for r in recovery], orphan_swept_s=swept,
           recovery_since_last_kill_s=[round(r, 1) for r in bounded], max_recovery_since_last_kill_s=round(max(bounded), 1),
           stalled_window_s=STALLED_WINDOW_S, lease_s=LEASE_MS / 1000, drain_after_saves_s=round(drained_s, 1),
           refused=saver.refused, retries=worker.metric("job_retries_total", {"queue": "draft-autosave"}))
    assert saver.refused == {}, saver.refused
    assert len(kills) == KILLS and all(k["owed"] for k in kills)
    assert lost == 0 and rolled_back == 0
    assert max(bounded) < RECOVERY_BOUND_S, (recovery, bounded)
    api.stop()
