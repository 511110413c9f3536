"""Postgres stopped under autosave load: /readyz says so within a second, autosave keeps
accepting (Redis holds the saves), and every draft reaches Postgres after recovery.

Recovery path (app/autosave/flush.py): flush jobs fail while Postgres is down and are retried
with backoff (0.5 s doubling, JOB_MAX_ATTEMPTS = 5, so about 7.5 s before a job is dead-lettered);
FlushFollowUp.sweep runs every 2 s and, for a draft dirty longer than AUTOSAVE_FLUSH_DELAY + 5 s,
enqueues a new flush (job gone) or retries its dead-lettered job once Postgres answers. So after
Postgres is back a draft is written within a retry backoff step or, at worst, about 2 s + 5 s
grace + one batch: SWEEP_BOUND_S.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import httpx

from tests.chaos.conftest import FULL, ChaosStack, Saver, eventually, record

OUTAGE_S = 30.0 if FULL else 6.0
USERS = 50 if FULL else 10
SPACING_S = 0.5 if FULL else 0.25
SWEEP_BOUND_S = 2 + 5 + 0.3 + 3
"""Sweep period + grace + flush delay + one batch and the restart's reconnect, in seconds."""


async def test_postgres_stopped_under_autosave_load(chaos: ChaosStack, saver: Saver, http: httpx.AsyncClient) -> None:
    """USERS users save every SPACING_S through a Postgres outage of OUTAGE_S: /readyz is 503
    ("database ping failed") within 1 s of the stop, no save is refused, and every draft is in
    Postgres at its last accepted version within SWEEP_BOUND_S of the restart."""
    api = chaos.spawn("api")
    chaos.spawn("worker")
    stop = asyncio.Event()
    drafts: dict[str, str | None] = {f"chaos-{uuid.uuid4().hex[:8]}": None for _ in range(USERS)}

    async def user(name: str) -> None:
        while not stop.is_set():
            r = await saver.save(api.url, name, drafts[name])
            if r.status_code == 202:
                drafts[name] = r.json()["draftId"]
            await asyncio.sleep(SPACING_S)

    tasks = [asyncio.create_task(user(u)) for u in drafts]
    try:
        # /readyz's own answer time under this load, before the outage: what a prober adds.
        baseline = []
        for _ in range(10):
            r = await http.get(f"{api.url}/readyz")
            assert r.status_code == 200
            baseline.append(r.elapsed.total_seconds())
            await asyncio.sleep(0.2)
        await asyncio.to_thread(chaos.pg.stop, "fast")
        stopped = time.monotonic()
        first_503 = await eventually("/readyz 503", lambda: http.get(f"{api.url}/readyz"),
                                     lambda r: r.status_code == 503, 10, every=0.05)
        readyz_s = time.monotonic() - stopped
        accepted_before = len(saver.latest)
        await asyncio.sleep(max(0.0, OUTAGE_S - (time.monotonic() - stopped)))
        during = dict(saver.refused)
        await asyncio.to_thread(chaos.pg.start)
        restarted = time.monotonic()
        await asyncio.sleep(1)
    finally:
        stop.set()
        await asyncio.gather(*tasks)
    await saver.all_persisted(within=SWEEP_BOUND_S + 30)
    recovery_s = time.monotonic() - restarted
    lost, rolled_back = await saver.losses()
    record("postgres_outage", outage_s=OUTAGE_S, users=USERS, drafts=len(saver.latest),
           accepted_saves_total=sum(saver.latest.values()), refused=saver.refused, readyz_503_after_s=round(readyz_s, 2),
           readyz_latency_before_s=round(max(baseline), 2), readyz_503_answer_s=round(first_503.elapsed.total_seconds(), 2),
           readyz_body=first_503.json().get("detail"), lost=lost, rolled_back=rolled_back,
           all_in_postgres_after_restart_s=round(recovery_s, 1), sweep_bound_s=SWEEP_BOUND_S)
    # Within 1 s of the stop, plus what this load already adds to any /readyz answer.
    assert readyz_s < 1.0 + max(baseline) and "database ping failed" in first_503.text
    assert during == {} and saver.refused == {}, saver.refused
    assert accepted_before >= USERS
    assert lost == 0 and rolled_back == 0
    assert recovery_s < SWEEP_BOUND_S, f"{recovery_s:.1f} s: slower than the sweep bound"
