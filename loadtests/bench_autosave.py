"""Autosave benchmark: open-loop load at a fixed rate across many users, then save-to-row.

    python -m loadtests.bench_autosave [--rate 300] [--seconds 30] [--users 1000] [--warmup 5]

Each user edits one draft, saving at most every few seconds (well inside 30/min). Requests are
sent on a fixed schedule (open loop), and latency is measured from the scheduled send time, so a
stalled server cannot hide its queueing (no coordinated omission). Save-to-row is the time from a
202 to the commit of the first ``draft.saved`` event at or above that version.

The first ``--warmup`` seconds run at the same rate and are reported apart, not in the figures:
they are the processes' first minutes (new Postgres backends, first flush batches, caches
filling) compressed into seconds, not the steady state the SLO describes. The generator runs
with its garbage collector frozen and off, so its own pauses are not counted as the server's.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import resource
import time
import uuid
from typing import Any

import psycopg
import uvloop

from devstack.stack import stack
from devstack.stats import percentile
from loadtests import rawhttp


async def run(rate: int, seconds: int, users: int, flush_delay: float, warmup: float = 5.0,
              connections: int = 32) -> dict[str, object]:
    with stack(AUTOSAVE_FLUSH_DELAY=f"{int(flush_delay * 1000)}ms") as s:
        tokens = [s.token(f"bench-{i}") for i in range(users)]
        drafts = [str(uuid.uuid4()) for _ in range(users)]
        latencies: list[float] = []
        warm_latencies: list[float] = []
        accepted: list[tuple[str, int, float]] = []  # draft, version, wall time of the 202
        statuses: dict[int, int] = {}
        warm = int(rate * warmup)
        total = warm + rate * seconds
        pool: asyncio.Queue[rawhttp.Connection] = asyncio.Queue()
        for _ in range(connections):
            pool.put_nowait(await rawhttp.Connection("127.0.0.1", s.processes["api"].port).open())
        start = time.perf_counter() + 0.2
        measured_from = start + warm / rate
        gc.collect()
        gc.freeze()
        gc.disable()
        cpu0: Any = None
        server0: dict[str, float] = {}

        async def one(i: int, due: float) -> None:
            user = i % users
            body = json.dumps(
                {"draftId": drafts[user], "title": f"Draft {user}", "payload": {"text": f"edit {i}", "n": i}}
            ).encode()
            raw = rawhttp.post_json("/api/autosave", body, {"Authorization": f"Bearer {tokens[user]}"})
            conn = await pool.get()  # waiting for a free connection counts as latency (open loop)
            try:
                status, reply = await conn.request(raw)
            finally:
                pool.put_nowait(conn)
            if i < warm:
                warm_latencies.append(time.perf_counter() - due)
                return
            latencies.append(time.perf_counter() - due)
            statuses[status] = statuses.get(status, 0) + 1
            if status == 202:
                accepted.append((drafts[user], json.loads(reply)["version"], time.time()))

        tasks = []
        for i in range(total):  # release each request at its scheduled time
            due = start + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            if i == warm:
                cpu0, server0 = resource.getrusage(resource.RUSAGE_SELF), s.cpu()
            tasks.append(asyncio.create_task(one(i, due)))
        await asyncio.gather(*tasks)
        gc.enable()
        elapsed = time.perf_counter() - measured_from
        cpu1 = resource.getrusage(resource.RUSAGE_SELF)
        server1 = s.cpu()
        while not pool.empty():
            pool.get_nowait().close()
        # Wait for the last flushes, then match each accepted save to the write that carried it.
        await asyncio.sleep(flush_delay + 2)
        async with await psycopg.AsyncConnection.connect(s.env["DATABASE_URL"]) as conn:
            cur = await conn.execute(
                "SELECT substr(channel, 7), (data->>'version')::int, extract(epoch from created_at)"
                " FROM channel_events WHERE type = 'draft.saved' ORDER BY created_at"
            )
            writes: dict[str, list[tuple[int, float]]] = {}
            for draft, version, at in await cur.fetchall():
                writes.setdefault(draft, []).append((version, float(at)))
            cur = await conn.execute("SELECT count(*) FROM spec_drafts")
            rows = (await cur.fetchone())[0]
        to_row = []
        missing = 0
        for draft, version, at in accepted:
            hit = next((t for v, t in writes.get(draft, []) if v >= version), None)
            if hit is None:
                missing += 1
            else:
                to_row.append(hit - at)
        generator_cpu = (cpu1.ru_utime + cpu1.ru_stime) - (cpu0.ru_utime + cpu0.ru_stime)
        return {
            "command": f"python -m loadtests.bench_autosave --rate {rate} --seconds {seconds} --users {users}"
                       f" --warmup {warmup:g}",
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "requests": len(latencies),
            "throughput_rps": round(len(latencies) / elapsed, 1),
            "statuses": statuses,
            "latency_ms": {p: round(percentile(latencies, q) * 1000, 2) for p, q in (("p50", 50), ("p95", 95), ("p99", 99))},
            "latency_max_ms": round(max(latencies) * 1000, 2),
            "warmup": {"seconds": warmup, "requests": len(warm_latencies),
                       "p99_ms": round(percentile(warm_latencies, 99) * 1000, 2) if warm_latencies else None},
            "save_to_row_ms": {p: round(percentile(to_row, q) * 1000, 1) for p, q in (("p50", 50), ("p95", 95), ("p99", 99))},
            "saves_without_row": missing,
            "rows": rows,
            "db_writes": sum(len(w) for w in writes.values()),
            "flush_delay_ms": int(flush_delay * 1000),
            "generator_cpu_s": round(generator_cpu, 2),
            "api_cpu_ms_per_request": round((server1["api"] - server0["api"]) * 1000 / len(latencies), 3),
            "worker_cpu_ms_per_save": round((server1["worker"] - server0["worker"]) * 1000 / len(latencies), 3),
            "cpus": os.cpu_count(),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=int, default=300, help="requests per second (default 300)")
    parser.add_argument("--seconds", type=int, default=30, help="duration (default 30)")
    parser.add_argument("--users", type=int, default=1000, help="distinct users (default 1000)")
    parser.add_argument("--flush-delay", type=float, default=1.0, help="AUTOSAVE_FLUSH_DELAY in s (default 1)")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds at the same rate before measuring (default 5)")
    args = parser.parse_args()
    print(f"autosave benchmark: {args.rate}/s for {args.warmup:g} s of warm-up, then {args.seconds} s measured,"
          f" across {args.users} users ...", flush=True)
    result = uvloop.run(run(args.rate, args.seconds, args.users, args.flush_delay, args.warmup))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
