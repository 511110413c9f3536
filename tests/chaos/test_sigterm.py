"""SIGTERM under load to an API process, a gateway process and a worker: no accepted autosave
is lost, sockets are closed with 1001 and resume on another process without a gap.

The gateway role (``draftwire gateway``) is being built on another branch; its case runs once
``draftwire gateway --help`` works and is skipped with that reason until then.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
import uuid

import httpx
import pytest

from devstack.processes import DRAFTWIRE
from tests.chaos.conftest import FULL, ChaosStack, Saver, record
from tests.realtime.support import Client, channel_name

SOCKETS = 50 if FULL else 10
USERS = 40 if FULL else 10
DRAIN_BOUND_S = 30.0
"""The contract: a SIGTERMed process exits within 30 s."""


def has_gateway() -> bool:
    done = subprocess.run([DRAFTWIRE, "gateway", "--help"], capture_output=True, check=False)
    return done.returncode == 0


async def _savers(saver: Saver, bases: list[str], stop: asyncio.Event) -> list[asyncio.Task[None]]:
    async def user(name: str, n: int) -> None:
        draft: str | None = None
        while not stop.is_set():
            try:
                r = await saver.save(bases[n % len(bases)], name, draft)
                if r.status_code == 202:
                    draft = r.json()["draftId"]
            except httpx.HTTPError:
                pass  # the draining process refuses the connection: not accepted, nothing owed
            n += 1
            await asyncio.sleep(0.1)

    return [asyncio.create_task(user(f"chaos-{uuid.uuid4().hex[:8]}", i)) for i in range(USERS)]


GATEWAY_MISSING = "`draftwire gateway --help` fails: the gateway role is not on this branch yet (branch gateway)"


@pytest.mark.parametrize("role", ["api", pytest.param("gateway", marks=pytest.mark.skipif(
    not has_gateway(), reason=GATEWAY_MISSING))])
async def test_sigterm_to_a_socket_process_resumes_elsewhere(role: str, chaos: ChaosStack, saver: Saver,
                                                            http: httpx.AsyncClient) -> None:
    """SOCKETS sockets on the ``role`` process follow a channel published through another API
    while USERS users save through both; SIGTERM the ``role`` process: it exits 0 within 30 s,
    every socket is closed with 1001, each client resubscribes on the other API with its last
    seq and ends with every seq exactly once; every accepted save reaches Postgres."""
    victim = chaos.spawn(role)
    other = chaos.spawn("api")
    chaos.spawn("worker")
    admin = chaos.token("chaos-admin", admin=True)
    channel = channel_name()
    clients = await chaos.subscribers(victim.url, SOCKETS, channel)
    stop = asyncio.Event()
    published: list[int] = []

    async def publisher() -> None:
        while not stop.is_set():
            r = await http.post(f"{other.url}/api/admin/channels/{channel}/events", json={"type": "chaos.tick", "data": {}},
                                headers={"Authorization": f"Bearer {admin}"})
            assert r.status_code == 201, r.text
            published.append(int(r.json()["seq"]))
            await asyncio.sleep(0.02)

    bases = [victim.url, other.url] if role == "api" else [other.url]
    tasks = [asyncio.create_task(publisher()), *await _savers(saver, bases, stop)]
    await asyncio.sleep(2)
    started = time.monotonic()
    code = await asyncio.to_thread(victim.stop)
    exit_s = time.monotonic() - started
    closes = [await c.wait_closed(10) for c in clients]
    bases[:] = [other.url]
    resumed = []
    for c in clients:
        again = await Client.open(other.url, chaos.token(f"chaos-sub-{uuid.uuid4().hex[:4]}", admin=True))
        await again.subscribe(channel, since=c.last(channel))
        resumed.append(again)
    await asyncio.sleep(2)
    stop.set()
    await asyncio.gather(*tasks)
    final = published[-1]
    await asyncio.gather(*(r.wait_seq(channel, final, timeout=30) for r in resumed))
    gaps = duplicates = 0
    for before, after in zip(clients, resumed, strict=True):
        seqs = before.seqs.get(channel, []) + after.seqs.get(channel, [])
        gaps += len(set(range(1, final + 1)) - set(seqs)) + len(before.violations) + len(after.violations)
        duplicates += len(seqs) - len(set(seqs))
    await saver.all_persisted(within=45)
    lost, rolled_back = await saver.losses()
    record(f"sigterm_{role}", exit_code=code, exit_s=round(exit_s, 1), sockets=SOCKETS,
           close_codes=sorted(set(closes)), events=final, gaps=gaps, duplicates=duplicates, drafts=len(saver.latest),
           lost=lost, rolled_back=rolled_back, refused=saver.refused)
    assert code == 0 and exit_s < DRAIN_BOUND_S, f"exit {code} after {exit_s:.1f} s; its log ends:\n{victim.tail(60)}"
    assert set(closes) == {1001}, closes
    assert gaps == 0 and duplicates == 0
    assert lost == 0 and rolled_back == 0
    for c in resumed:
        await c.close()


async def test_sigterm_to_a_worker_under_load(chaos: ChaosStack, saver: Saver) -> None:
    """USERS users save while two workers flush; SIGTERM one: it exits 0 within 30 s and every
    accepted save reaches Postgres (the other worker takes what the first handed back)."""
    api = chaos.spawn("api")
    first = chaos.spawn("worker")
    chaos.spawn("worker")
    stop = asyncio.Event()
    tasks = await _savers(saver, [api.url], stop)
    await asyncio.sleep(3)
    started = time.monotonic()
    code = await asyncio.to_thread(first.stop)
    exit_s = time.monotonic() - started
    await asyncio.sleep(2)
    stop.set()
    await asyncio.gather(*tasks)
    persisted_s = await saver.all_persisted(within=45)
    lost, rolled_back = await saver.losses()
    record("sigterm_worker", exit_code=code, exit_s=round(exit_s, 1), drafts=len(saver.latest),
           saves=sum(saver.latest.values()), lost=lost, rolled_back=rolled_back, persisted_after_load_s=round(persisted_s, 1))
    assert code == 0 and exit_s < DRAIN_BOUND_S, f"exit {code} after {exit_s:.1f} s; its log ends:\n{first.tail(60)}"
    assert saver.refused == {}
    assert lost == 0 and rolled_back == 0
