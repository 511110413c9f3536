"""Admin publish endpoint, ``/api/realtime/metrics``, gap detection and delivery telemetry."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import psycopg

from tests.realtime.conftest import Realtime
from tests.realtime.support import Client, assert_exactly, channel_name, publish


async def test_admin_publish_validation(rt_api: Realtime, http: httpx.AsyncClient,
                                        token: Callable[..., str], admin: str) -> None:
    """201 {channel, seq} for an admin; 403 for a user, 401 without a token; 422 for a malformed
    channel name, event type, data or body; every error is JSON {error, detail}."""
    channel = channel_name()
    url = f"{rt_api.api_url}/api/admin/channels/{channel}/events"
    auth = {"authorization": f"Bearer {admin}"}
    r = await http.post(url, json={"type": "job.note", "data": {"a": 1}}, headers=auth)
    assert r.status_code == 201 and r.json() == {"channel": channel, "seq": 1}
    assert (await http.post(url, json={"type": "job.note"}, headers=auth)).json()["seq"] == 2
    bad = [
        (f"{rt_api.api_url}/api/admin/channels/nope/events", {"type": "job.note"}),
        (f"{rt_api.api_url}/api/admin/channels/job:a b/events", {"type": "job.note"}),
        (url, {"type": "Bad Type"}),
        (url, {"type": 5}),
        (url, {"data": {}}),
        (url, {"type": "job.note", "data": [1]}),
        (url, [1, 2]),
    ]
    for target, body in bad:
        r = await http.post(target, content=json.dumps(body), headers=auth)
        assert r.status_code == 422, (target, body, r.text)
        assert set(r.json()) == {"error", "detail"}
    r = await http.post(url, content=b"{not json", headers=auth)
    assert r.status_code == 422
    r = await http.post(url, json={"type": "job.note"}, headers={"authorization": f"Bearer {token()}"})
    assert r.status_code == 403 and r.json()["error"] == "forbidden"
    assert (await http.post(url, json={"type": "job.note"})).status_code == 401


async def test_realtime_metrics_json(rt_api: Realtime, http: httpx.AsyncClient,
                                     token: Callable[..., str], admin: str) -> None:
    """/api/realtime/metrics (admin only) reports connections, subscribers per channel and the last catch-up."""
    channel = channel_name()
    await publish(http, rt_api.api_url, admin, channel, 3)
    client = await Client.open(rt_api.url, admin)
    await client.subscribe(channel)
    await client.wait_op("caught_up", channel)
    r = await http.get(f"{rt_api.url}/api/realtime/metrics", headers={"authorization": f"Bearer {admin}"})
    body = r.json()
    assert set(body) == {"activeConnections", "totalSubscribers", "subscriptionsByJob", "lastCatchUp"}
    assert body["activeConnections"] >= 1 and body["totalSubscribers"] >= 1
    assert body["subscriptionsByJob"][channel] == 1
    assert set(body["lastCatchUp"]) == {"jobId", "eventCount", "durationMs", "completedAt"}
    r = await http.get(f"{rt_api.url}/api/realtime/metrics", headers={"authorization": f"Bearer {token()}"})
    assert r.status_code == 403
    await client.close()
    assert any(line.get("msg") == "catchup_completed" for line in rt_api.logs())
    assert rt_api.metric("realtime_catchup_duration_seconds_count") >= 1


async def test_gap_is_backfilled_from_postgres(rt_api: Realtime, http: httpx.AsyncClient, admin: str,
                                               owner_conn: psycopg.AsyncConnection[tuple[object, ...]]) -> None:
    """Events committed without an announcement (lost on Redis) are noticed by the next seq's jump,
    read from Postgres, and delivered in order before it; realtime_sequence_gaps_total counts it."""
    channel = channel_name()
    client = await Client.open(rt_api.url, admin)
    await client.subscribe(channel)
    await client.wait_op("caught_up", channel)
    gaps_before = rt_api.metric("realtime_sequence_gaps_total")
    await publish(http, rt_api.api_url, admin, channel, 2)
    for _ in range(3):  # committed, never announced
        await owner_conn.execute("SELECT * FROM publish_event(%s, 'job.progress', '{}'::jsonb)", (channel,))
    await publish(http, rt_api.api_url, admin, channel, 2)
    await client.wait_seq(channel, 7)
    assert_exactly(client, channel, 1, 7)
    assert rt_api.metric("realtime_sequence_gaps_total") >= gaps_before + 1
    assert rt_api.metric("realtime_broadcast_latency_seconds_count") >= 4
    await client.close()
