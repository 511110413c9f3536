"""The demo page's autosave in a real browser: debounced bursts, two tabs following each other,
a stale tab's conflict."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import httpx

from tests.web.conftest import Browser, Stack

BURSTS = ["The interview ", "went well; ", "next step is a ", "take-home."]


def _user() -> str:
    return f"web-{uuid.uuid4().hex[:10]}"


def test_typing_bursts_save_once_per_pause(stack: Stack, browser: Browser) -> None:
    """Each burst of typing (keys < 800 ms apart) becomes one save, sent no sooner than 800 ms
    after its last key; the server counts exactly those saves, and Postgres ends with the text."""
    page = browser.page().sign_in(_user())
    accepted_before = stack.api.metric("autosave_requests_total", {"outcome": "accepted"})
    for n, burst in enumerate(BURSTS, start=1):
        for piece in (burst[: len(burst) // 2], burst[len(burst) // 2 :]):  # two key runs, one burst
            page.type("body", piece)
        page.wait(f"window.__draftwire.statuses.filter(s => s.state === 'saved').length === {n}",
                  what=f"save {n}")
    statuses = page.hook("statuses")
    saving = [s for s in statuses if s["state"] == "saving"]
    assert len(saving) == len(BURSTS), [s["text"] for s in statuses]
    inputs = page.hook("inputs")
    for s in saving:
        last_key = max(t for t in inputs if t <= s["at"])
        assert s["at"] - last_key >= 795, f"saved {s['at'] - last_key:.0f} ms after the last key"
    assert stack.api.metric("autosave_requests_total", {"outcome": "accepted"}) - accepted_before == len(BURSTS)
    assert page.js("return document.getElementById('save-status').textContent") == f"saved v{len(BURSTS)}"

    text = "".join(BURSTS)
    assert page.js("return document.getElementById('body').value") == text
    draft_id = page.hook("draftId")
    page.wait(f"window.__draftwire.events.some(e => e.type === 'draft.saved' && e.data.version === {len(BURSTS)})",
              what="draft.saved of the last version (the flush reached Postgres)")
    assert stack.draft_row(draft_id) == ({"body": text}, len(BURSTS))


def test_two_tabs_follow_each_other(stack: Stack, browser: Browser) -> None:
    """A save in one tab reaches the other through draft.saved, which loads the new text."""
    first = browser.page().sign_in(_user())
    first.type("body", "draft from tab one")
    first.wait("window.__draftwire.statuses.some(s => s.state === 'saved')", what="the first save")
    draft_id = first.hook("draftId")
    second = browser.page(f"/demo?draft={draft_id}")  # same profile: already signed in
    second.wait("window.__draftwire.signedIn && document.getElementById('body').value === 'draft from tab one'",
                what="tab two to load the draft")

    first.type("body", ", edited")
    second.wait("window.__draftwire.events.some(e => e.type === 'draft.saved' && e.data.version === 2)",
                what="draft.saved v2 in tab two")
    second.wait("document.getElementById('body').value === 'draft from tab one, edited'",
                what="tab two to show tab one's text")
    assert second.hook("autosave.version") == 2
    assert second.hook("statuses.filter(s => s.state === 'saving').length") == 0  # it only followed


def test_stale_tab_gets_conflict(stack: Stack, browser: Browser, token: Callable[..., str]) -> None:
    """A tab editing an old version gets the conflict callback on 409; the newer work stays."""
    user = _user()
    page = browser.page("/demo?debounce=3000").sign_in(user)
    page.type("body", "version one")
    page.js("window.__draftwire.autosave.flush()")
    page.wait("window.__draftwire.autosave.version === 1", what="the first save")
    draft_id = page.hook("draftId")

    page.type("body", " plus stale edits")  # held for 3 s by the debounce
    other = httpx.post(f"{stack.api.url}/api/autosave", headers={"authorization": f"Bearer {token(user)}"},
                       json={"draftId": draft_id, "title": "t", "payload": {"body": "newer work"}, "baseVersion": 1})
    assert other.status_code == 202 and other.json()["version"] == 2
    page.wait("window.__draftwire.conflicts.length === 1", what="the conflict callback")
    conflict = page.hook("conflicts[0]")
    assert conflict["baseVersion"] == 1 and "version 2" in conflict["detail"]
    assert conflict["content"]["payload"] == {"body": "version one plus stale edits"}  # nothing typed is lost
    assert page.js("return document.getElementById('save-status').dataset.state") == "conflict"
    assert not page.js("return document.getElementById('conflict').hidden")
    page.wait("window.__draftwire.events.some(e => e.type === 'draft.saved' && e.data.version === 2)",
              what="the newer version's flush")
    assert stack.draft_row(draft_id) == ({"body": "newer work"}, 2)
