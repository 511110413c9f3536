"""The client under a real 429 (a low AUTOSAVE_RATE_LIMIT_PER_MINUTE) and a real 503 (Redis
stopped): it backs off as the server asks, keeps typing in memory, and loses no edit."""

from __future__ import annotations

import uuid
from collections.abc import Callable

from redis import Redis

from app.ratelimit import Limit
from tests.support.processes import ServiceProcess
from tests.web.conftest import PROD_LIMIT, Browser, Page, Stack

AGED_MS = 57_000
"""How old the saves that fill the rate-limit window are made: the window frees ~3 s later, so
the server's own Retry-After is ~3 s rather than a minute."""


def _fill_rate_window(stack: Stack, user: str) -> None:
    """Count PROD_LIMIT saves made 57 s ago against the user, in the limiter's own sorted set."""
    client = Redis.from_url(stack.redis.url)
    seconds, micros = client.time()
    now_ms = seconds * 1000 + micros // 1000
    key = Limit("autosave", PROD_LIMIT, 60).key(user)
    client.zadd(key, {f"aged-{i}": now_ms - AGED_MS + i for i in range(PROD_LIMIT)})
    client.close()


def _status(page: Page, state: str, nth: int = 1) -> dict:
    return page.wait(f"window.__draftwire.statuses.filter(s => s.state === '{state}')[{nth - 1}]",
                     what=f"status {state} #{nth}")  # type: ignore[no-any-return]


def test_backs_off_on_429_then_503_and_loses_nothing(stack: Stack, prod_api: ServiceProcess,
                                                     browser_factory: Callable[..., Browser],
                                                     token: Callable[..., str]) -> None:
    """429 with Retry-After ~3 s, then 503 while Redis is down: each retry waits at least what the
    server asked, edits typed meanwhile ride along on the retry, and Postgres ends with every edit."""
    user = f"web-{uuid.uuid4().hex[:10]}"
    page = browser_factory(base_url=prod_api.url).page().paste_token(token(user))
    _fill_rate_window(stack, user)

    page.type("body", "first")
    limited = _status(page, "retrying")
    assert limited["httpStatus"] == 429 and limited["text"].startswith("rate limited, retrying in ")
    assert limited["retryInMs"] >= 2000  # the server's Retry-After, not the 0.5-1 s first backoff
    page.type("body", " second")  # while waiting: held, sent by the retry
    saved = _status(page, "saved")
    saving = page.hook("statuses.filter(s => s.state === 'saving')")
    assert len(saving) == 2 and saving[1]["at"] - limited["at"] >= limited["retryInMs"] - 20
    assert saved["version"] == 1
    page.wait("window.__draftwire.events.some(e => e.type === 'draft.saved' && e.data.version === 1)",
              what="v1 flushed")

    stack.kill_redis()
    try:
        page.type("body", " third")
        down = _status(page, "retrying", 2)
        assert down["httpStatus"] == 503 and down["text"].startswith("server unavailable, retrying in ")
        assert down["retryInMs"] >= 5000  # Retry-After: 5
        page.type("body", " fourth")
    finally:
        stack.redis.start()
    final = _status(page, "saved", 2)
    assert final["version"] == 2
    text = "first second third fourth"
    assert page.js("return document.getElementById('body').value") == text
    page.wait("window.__draftwire.events.some(e => e.type === 'draft.saved' && e.data.version === 2)",
              timeout=45, what="v2 flushed after Redis came back")
    assert stack.draft_row(page.hook("draftId")) == ({"body": text}, 2)
    failed = [s["httpStatus"] for s in page.hook("statuses") if s["state"] in ("retrying", "offline")]
    assert failed[0] == 429 and set(failed[1:]) <= {503, 0}, failed  # 0: a request cut by the kill
