"""Drills of the feature alerts: autosave, realtime, and the availability SLO."""

from __future__ import annotations

import asyncio
import contextlib
import re
import uuid

from app.db.migrate import available
from drills.faults import (
    Background,
    catch_up_once,
    fresh_user,
    hold_lock,
    open_socket,
    redis_command,
    sql,
    stall,
    terminate_lock_holder,
)
from drills.live import API2_MAX_CONNECTIONS, Live
from drills.model import Drill

# --- autosave -----------------------------------------------------------------------------------


def saves(live: Live, bg: Background, every: float = 0.1) -> None:
    """Autosave traffic: each save from a new user (no rate limit in the way)."""
    bg.every(every, lambda: live.save(fresh_user()))


async def stalled_redis(live: Live, bg: Background) -> None:
    """Redis freezes for 0.7 s of every second (SIGSTOP/SIGCONT), under the 0.8 s probe timeout."""
    assert live.redis.proc is not None
    saves(live, bg, 0.05)
    bg.every(0.3, stall(live.redis.proc.pid, False, 0.7))


async def stop_stalls(live: Live, bg: Background) -> None:
    await bg.stop()


async def locked_drafts(live: Live, bg: Background) -> None:
    """A session holds an EXCLUSIVE lock on spec_drafts 0.5 s of every 0.6 s: flushes wait on it."""
    saves(live, bg, 0.1)
    hold_lock(live, "spec_drafts", "EXCLUSIVE", 0.5, 0.1, bg)


async def end_lock(live: Live, bg: Background) -> None:
    """Runbook step 1: find the lock holder in pg_stat_activity, pg_terminate_backend it."""
    await terminate_lock_holder(live)
    await bg.stop()


async def revoke_writes(live: Live, bg: Background) -> None:
    """A grant lost by hand: the application role may no longer write spec_drafts."""
    await sql(live, "REVOKE INSERT, UPDATE ON spec_drafts FROM draftwire_app")
    saves(live, bg, 0.1)


def migration_grants(table: str) -> list[str]:
    """The GRANT statements of the shipped migrations that name ``table``."""
    found = []
    for migration in available():
        found += [g for g in re.findall(r"^GRANT [^;]+;", migration.sql, re.M) if re.search(rf"\b{table}\b", g)]
    return found


async def regrant(live: Live, bg: Background) -> None:
    """Runbook step 1: re-apply the migration's grants on spec_drafts (as the schema owner)."""
    for grant in migration_grants("spec_drafts"):
        await sql(live, grant)
    await asyncio.sleep(2)
    await bg.stop()


# --- realtime -----------------------------------------------------------------------------------


async def locked_events(live: Live, bg: Background) -> None:
    """Tabs open a 30-event channel every 0.3 s while a session locks channel_events 2 s at a time."""
    channel = f"job:drill-{uuid.uuid4().hex[:8]}"
    await live.publish(channel, 30)
    bg.every(0.3, lambda: catch_up_once(live, live.api.url, channel))
    hold_lock(live, "channel_events", "ACCESS EXCLUSIVE", 2.0, 0.2, bg)


async def slow_api_loop(live: Live, bg: Background) -> None:
    """api-1's event loop freezes 0.7 s of every second (SIGSTOP/SIGCONT), as a CPU-bound process
    does; events are published through api-2 to sockets subscribed on api-1."""
    channel = f"job:drill-{uuid.uuid4().hex[:8]}"
    for _ in range(5):
        ws = await open_socket(live, live.api.url, channel)
        bg.sockets.append(ws)

        async def drain(ws=ws) -> None:  # type: ignore[no-untyped-def]
            with contextlib.suppress(Exception):
                async for _ in ws:
                    pass

        bg.tasks.append(asyncio.create_task(drain()))
    bg.every(0.1, lambda: live.publish(channel, 1, base=live.api2.url))
    bg.every(0.3, stall(live.api.pid, True, 0.7))


async def restart_api1(live: Live, bg: Background) -> None:
    """Runbook step 1: restart the slow process (clients resume from their last seq)."""
    await bg.stop()
    await asyncio.to_thread(live.api.stop)
    await asyncio.to_thread(live.api.start)


async def unannounced_event(live: Live, bg: Background) -> None:
    """A publisher that commits an event without announcing it, then the next one announced:
    a subscribed gateway sees the seq jump and backfills from Postgres."""
    channel = f"job:drill-{uuid.uuid4().hex[:8]}"
    await live.publish(channel, 1)
    bg.sockets.append(await open_socket(live, live.api.url, channel))

    async def drop_one() -> None:
        await sql(live, "SELECT publish_event(%s, 'drill.unannounced', '{}'::jsonb)", (channel,))
        await live.publish(channel, 1)

    bg.every(1.0, drop_one)


async def stop_publisher(live: Live, bg: Background) -> None:
    """Runbook step 3: the publisher that skips announcing is found and stopped; nothing else to do."""
    await bg.stop()


async def fill_quota(live: Live, bg: Background) -> None:
    for _ in range(API2_MAX_CONNECTIONS - 1):
        bg.sockets.append(await open_socket(live, live.api2.url))


async def restart_api2(live: Live, bg: Background) -> None:
    """Runbook step 3: restart the full process (sockets close with 1001, clients reconnect)."""
    await asyncio.to_thread(live.api2.stop)
    await bg.stop()
    await asyncio.to_thread(live.api2.start)


async def cut_subscriber(live: Live, bg: Background) -> None:
    """The network between the API and Redis flaps: with a tab following a channel on each API
    process (so each holds a Redis subscription), the pubsub connections are cut every 3 s."""
    channel = f"job:drill-{uuid.uuid4().hex[:8]}"
    await live.publish(channel, 1)
    for base in (live.api.url, live.api2.url):
        bg.sockets.append(await open_socket(live, base, channel))
    bg.every(3.0, lambda: redis_command(live, "CLIENT", "KILL", "TYPE", "pubsub"))


# --- SLO ----------------------------------------------------------------------------------------


def error_mix(live: Live, bg: Background, errors_per_100: int) -> None:
    """With Postgres down, ``GET /api/drafts`` answers 5xx while ``POST /api/autosave`` still
    answers 202 (Redis keeps the save): ``errors_per_100`` lists per 100 requests."""

    async def burst() -> None:
        user = fresh_user()
        headers = {"Authorization": f"Bearer {live.token(user)}"}
        for i in range(100):
            if i < errors_per_100:
                await live.http.get(f"{live.api.url}/api/drafts?limit=1", headers=headers)
            else:
                await live.save(fresh_user())

    bg.every(0.01, burst)


def burn(errors_per_100: int):  # type: ignore[no-untyped-def]
    async def produce(live: Live, bg: Background) -> None:
        await asyncio.to_thread(live.pg.stop, "fast")
        error_mix(live, bg, errors_per_100)

    return produce


async def postgres_back_keep_traffic(live: Live, bg: Background) -> None:
    """Step 1 (fast burn: DatabaseDown) / the cause of a slow burn fixed: Postgres back; the
    traffic goes on so the short window sees good requests and the alert resolves."""
    await asyncio.to_thread(live.pg.start)


def slo(priority: str, window: str, per_100: int, fire: float, resolve: float) -> Drill:
    return Drill("APIErrorBudgetBurn", "slo",
                 f"Postgres stopped: {per_100} % of requests (GET /api/drafts) answer 5xx, the rest are saves",
                 "1/2. the cause (Postgres) fixed: DatabaseDown step 1, start Postgres",
                 burn(per_100), postgres_back_keep_traffic, r'"status_code":"5\d\d"',
                 labels={"long_window": window}, fire_timeout=fire, resolve_timeout=resolve)


DRILLS = [
    Drill("AutosaveLatencyHigh", "autosave", "Redis frozen 0.7 s of every second under autosave traffic",
          "1. Redis slow: fix Redis (the freezes stop)", stalled_redis, stop_stalls, r"\} (0\.[5-9]|[1-9])"),
    Drill("AutosaveFlushSlow", "autosave", "a session locks spec_drafts 0.5 s of every 0.6 s under autosave traffic",
          "1. find the lock in pg_stat_activity, pg_terminate_backend it", locked_drafts, end_lock,
          r"\} (0\.[2-9]|[1-9])"),
    Drill("AutosaveFlushFailing", "autosave", "INSERT/UPDATE on spec_drafts revoked from draftwire_app",
          "1. permission denied: re-apply the migration's grants", revoke_writes, regrant,
          r"lastFlushOk\": false|InsufficientPrivilege"),
    Drill("RealtimeCatchupSlow", "realtime", "channel_events locked 2 s at a time while tabs catch up",
          "3. Postgres slow: end the lock (AutosaveFlushSlow step 1)", locked_events, end_lock,
          r"\} ([1-9]\.|[1-9]$)|durationMs\": [0-9]{4}"),
    Drill("RealtimeBroadcastLatencyHigh", "realtime", "api-1's event loop frozen 0.7 s of every second",
          "1. restart the slow process", slow_api_loop, restart_api1, r"\} (0\.[6-9]|[1-9])"),
    Drill("RealtimeSequenceGap", "realtime", "an event committed without its Redis announcement, every second",
          "3. the publisher that skips announcing is stopped", unannounced_event, stop_publisher,
          r"\} [1-9]", quick=True),
    Drill("RealtimeConnectionsNearQuota", "realtime",
          f"9 sockets held on api-2 (REALTIME_MAX_CONNECTIONS={API2_MAX_CONNECTIONS})",
          "3. restart the full process (sockets close with 1001)", fill_quota, restart_api2,
          r"activeConnections\": 9|\} 0\.9"),
    Drill("RealtimeRedisReconnecting", "realtime", "Redis cuts the pubsub connections every 3 s (CLIENT KILL)",
          "3. network flaps: fixed at the host (the cuts stop); the gateway recovers by itself",
          cut_subscriber, stop_stalls, r'"msg":"redis_reconnecting","attempt":\d'),
    slo("P1", "1h", 50, 60, 90),
    slo("P2", "6h", 50, 60, 120),
    slo("P3", "1d", 2, 150, 300),
    slo("P4", "3d", 1, 300, 600),
]
