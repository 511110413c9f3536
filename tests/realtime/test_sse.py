"""SSE ``/api/events``: same events as the socket, ``id:`` = seq, resume from ``Last-Event-ID``."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import httpx

from tests.realtime.conftest import Realtime
from tests.realtime.support import WAIT_S, channel_name, publish


async def _read_sse(response: httpx.Response, until_seq: int) -> list[dict[str, Any]]:
    """Parse messages until the event with seq ``until_seq``; each as {id, event, data}."""
    messages: list[dict[str, Any]] = []
    current: dict[str, Any] = {}
    async with asyncio.timeout(WAIT_S):
        async for line in response.aiter_lines():
            if line == "":
                if current:
                    messages.append(current)
                    if current.get("id") == str(until_seq):
                        return messages
                current = {}
            elif not line.startswith(":"):
                field, _, value = line.partition(": ")
                current[field] = json.loads(value) if field == "data" else value
    return messages


async def test_sse_resumes_from_last_event_id(rt_api: Realtime, http: httpx.AsyncClient, admin: str) -> None:
    """A stream resumed with Last-Event-ID gets exactly the events after it, then live ones, no gap."""
    channel = channel_name()
    await publish(http, rt_api.api_url, admin, channel, 30)
    url = f"{rt_api.url}/api/events"
    async with httpx.AsyncClient(timeout=None) as stream_client:
        async with stream_client.stream("GET", url, params={"channel": channel, "token": admin}) as r:
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
            first = await _read_sse(r, 12)
        ids = [int(m["id"]) for m in first if "id" in m]
        assert ids == list(range(1, 13))
        assert first[0]["event"] == "subscribed" and "id" not in first[0]
        ev = next(m for m in first if m.get("id") == "12")
        assert ev["event"] == "job.progress" and ev["data"]["seq"] == 12 and ev["data"]["channel"] == channel

        headers = {"Last-Event-ID": "12", "Authorization": f"Bearer {admin}"}
        async with stream_client.stream("GET", url, params={"channel": channel}, headers=headers) as r:
            pub = asyncio.create_task(publish(http, rt_api.api_url, admin, channel, 5))
            resumed = await _read_sse(r, 35)
            await pub
    seqs = [int(m["id"]) for m in resumed if "id" in m]
    assert seqs == list(range(13, 36))
    assert [m["event"] for m in resumed if "id" not in m] == ["subscribed", "caught_up"]


async def test_sse_since_seq_query(rt_api: Realtime, http: httpx.AsyncClient, admin: str) -> None:
    """``?sinceSeq=`` resumes like Last-Event-ID when the header is absent."""
    channel = channel_name()
    await publish(http, rt_api.api_url, admin, channel, 4)
    async with httpx.AsyncClient(timeout=None) as c, c.stream(
        "GET", f"{rt_api.url}/api/events", params={"channel": channel, "sinceSeq": "2", "token": admin}
    ) as r:
        got = await _read_sse(r, 4)
    assert [int(m["id"]) for m in got if "id" in m] == [3, 4]


async def test_sse_bad_requests(rt_api: Realtime, token: Callable[..., str], http: httpx.AsyncClient) -> None:
    """Bad Last-Event-ID or sinceSeq -> 400, bad channel -> 422, no token -> 401, someone else's
    channel -> 404: each a JSON {error, detail}, never a 500."""
    url = f"{rt_api.url}/api/events"
    user = token()
    cases = [
        ({"channel": channel_name(), "token": user}, {"Last-Event-ID": "abc"}, 400),
        ({"channel": channel_name(), "token": user}, {"Last-Event-ID": "-4"}, 400),
        ({"channel": channel_name(), "token": user}, {"Last-Event-ID": "9" * 40}, 400),
        ({"channel": channel_name(), "sinceSeq": "1e3", "token": user}, {}, 400),
        ({"channel": "nope", "token": user}, {}, 422),
        ({"token": user}, {}, 422),
        ({"channel": channel_name()}, {}, 401),
        ({"channel": channel_name(), "token": user}, {}, 404),
    ]
    for params, headers, status in cases:
        r = await http.get(url, params=params, headers=headers)
        assert r.status_code == status, (params, headers, r.text)
        assert set(r.json()) == {"error", "detail"}
    async with httpx.AsyncClient(timeout=10) as c, c.stream(
        "GET", url, params={"channel": channel_name(), "sinceSeq": "5", "token": token(admin=True)}
    ) as r:
        body = (await r.aread()).decode()  # past the head: an error event, then the stream ends
    assert "event: error" in body and '"bad_request"' in body
    assert httpx.get(f"{rt_api.url}/healthz").status_code == 200
