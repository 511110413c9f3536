"""Browser tests: Debian's headless Chromium, driven by Selenium through chromium-driver, against a
real API + worker + Postgres + Redis.

Everything the tests need lives here so it can move to ``devstack/`` in one piece: the stack
(its own Redis, so killing it disturbs no other test package), the browser, and the hook that saves
a screenshot of every page at the end of each test and names it in the report.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from devstack.servers import RedisServer
from tests.support.processes import ServiceProcess

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
SCREENSHOTS = Path(__file__).parent / "screenshots"
WAIT_S = 20.0
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    # A second tab is in the background: its timers and sockets must run at full speed.
    "--disable-background-timer-throttling", "--disable-renderer-backgrounding",
    "--disable-backgrounding-occluded-windows", "--window-size=1280,1100",
]
PROD_LIMIT = 3
"""AUTOSAVE_RATE_LIMIT_PER_MINUTE of :func:`prod_api`."""
WEB_ENV = {
    "DRAFTWIRE_ENV": "dev",  # the demo's dev sign-in (POST /demo/token) exists only in dev
    "AUTOSAVE_FLUSH_DELAY": "300ms",
    "RATE_LIMIT_REQUESTS": "100000",
    "REALTIME_MAX_PER_CLIENT": "50",
}

pytestmark = pytest.mark.skipif(
    not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)),
    reason="needs Debian's chromium and chromium-driver: scripts/system-deps.sh installs them",
)


# --- the stack ---------------------------------------------------------------------------------------
@dataclass
class Stack:
    """API and worker on a Redis of their own; the faults the tests inject, on real processes."""

    api: ServiceProcess
    worker: ServiceProcess
    redis: RedisServer
    database_url: str

    def pause_worker(self) -> None:
        """Freeze the worker mid-job (SIGSTOP to its process group), so a build is provably half done."""
        os.killpg(self.worker.proc.pid, signal.SIGSTOP)  # type: ignore[union-attr]

    def resume_worker(self) -> None:
        os.killpg(self.worker.proc.pid, signal.SIGCONT)  # type: ignore[union-attr]

    def kill_redis(self) -> None:
        self.redis.proc.kill()  # type: ignore[union-attr]
        self.redis.proc.wait()  # type: ignore[union-attr]

    def draft_row(self, draft_id: str) -> tuple[dict[str, Any], int] | None:
        """``(payload, version)`` of the draft as Postgres holds it (schema owner, RLS-exempt here)."""
        with psycopg.connect(self.database_url) as conn:
            row = conn.execute("SELECT payload, version FROM spec_drafts WHERE id = %s", (draft_id,)).fetchone()
        return (row[0], row[1]) if row else None


@pytest.fixture(scope="package")
def web_redis(workdir: Path) -> Iterator[RedisServer]:
    """Redis with an append-only file: a killed and restarted Redis keeps the queue, as in production."""
    server = RedisServer(workdir / f"web-redis-{uuid.uuid4().hex[:6]}", aof=True).start()
    yield server
    server.stop()


@pytest.fixture(scope="package")
def stack(spawn: Callable[..., ServiceProcess], web_redis: RedisServer, migrated: str) -> Stack:
    env = {**WEB_ENV, "REDIS_URL": web_redis.url}
    return Stack(spawn("api", **env), spawn("worker", **env), web_redis, migrated)


@pytest.fixture(scope="package")
def prod_api(spawn: Callable[..., ServiceProcess], stack: Stack) -> ServiceProcess:
    """A second API on the same Redis and Postgres, configured as outside dev (no dev sign-in) and
    with a low autosave limit, so a burst of saves meets a real 429."""
    return spawn("api", **{**WEB_ENV, "DRAFTWIRE_ENV": "test", "AUTOSAVE_RATE_LIMIT_PER_MINUTE": str(PROD_LIMIT),
                           "REDIS_URL": stack.redis.url})


# --- the browser -------------------------------------------------------------------------------------
@dataclass
class Page:
    """One browser window on the demo page, and bounded waits on what the page recorded."""

    driver: webdriver.Chrome
    base_url: str
    handle: str = ""
    name: str = "page"

    def open(self, path: str = "/demo") -> Page:
        self.focus()
        self.driver.get(self.base_url + path)
        self.wait("window.__draftwire && window.__draftwire.ready", what="the demo page to start")
        return self

    def focus(self) -> None:
        if self.handle:
            self.driver.switch_to.window(self.handle)

    def js(self, script: str, *args: Any) -> Any:
        self.focus()
        return self.driver.execute_script(script, *args)

    def wait(self, expression: str, timeout: float = WAIT_S, what: str = "") -> Any:
        """Poll a JavaScript expression until it is truthy; its value, or a TimeoutException."""
        self.focus()
        try:
            return WebDriverWait(self.driver, timeout, poll_frequency=0.05).until(
                lambda d: d.execute_script(f"return ({expression})")
            )
        except TimeoutException:
            hook = self.driver.execute_script(
                "const h = window.__draftwire || {}; return JSON.stringify({statuses: (h.statuses||[]).slice(-5),"
                " connection: (h.connection||[]).slice(-5), events: (h.events||[]).length, build: h.build})"
            )
            raise TimeoutException(f"waited {timeout} s for {what or expression}; page saw {hook}") from None

    def paste_token(self, token: str) -> Page:
        """The sign-in every environment offers: a pasted session token."""
        self.type("paste-token", token)
        self.driver.find_element(By.ID, "paste-signin").click()
        self.wait("window.__draftwire.signedIn", what="sign-in with a pasted token")
        return self

    def sign_in(self, user: str, *, admin: bool = False) -> Page:
        """The dev sign-in form (POST /demo/token)."""
        self.wait("!document.getElementById('dev-form').hidden", what="the dev sign-in form")
        field_ = self.driver.find_element(By.ID, "dev-user")
        field_.clear()
        field_.send_keys(user)
        if self.driver.find_element(By.ID, "dev-admin").is_selected() != admin:
            self.driver.find_element(By.ID, "dev-admin").click()
        self.driver.find_element(By.ID, "dev-signin").click()
        self.wait("window.__draftwire.signedIn", what="sign-in")
        return self

    def type(self, element_id: str, text: str) -> None:
        self.focus()
        self.driver.find_element(By.ID, element_id).send_keys(text)

    def console_errors(self) -> list[str]:
        """Console errors since the last call (CSP violations and uncaught exceptions show here)."""
        return [entry["message"] for entry in self.driver.get_log("browser") if entry["level"] == "SEVERE"]

    def hook(self, path: str) -> Any:
        return self.js(f"return window.__draftwire.{path}")


@dataclass
class Browser:
    """A headless Chromium with a throwaway profile; ``page()`` opens a window (the first, then tabs)."""

    driver: webdriver.Chrome
    base_url: str
    pages: list[Page] = field(default_factory=list)

    def page(self, path: str = "/demo") -> Page:
        if self.pages:
            self.driver.switch_to.new_window("tab")
        page = Page(self.driver, self.base_url, self.driver.current_window_handle, f"tab{len(self.pages) + 1}")
        self.pages.append(page)
        return page.open(path)

    def screenshots(self, test_name: str) -> list[Path]:
        SCREENSHOTS.mkdir(exist_ok=True)
        paths = []
        for page in self.pages:
            page.focus()
            path = SCREENSHOTS / f"{test_name}-{page.name}.png"
            self.driver.save_screenshot(str(path))
            paths.append(path)
        return paths


def _chromium(profile: Path, block_websocket: bool) -> webdriver.Chrome:
    os.environ.setdefault("SE_OFFLINE", "true")  # never let Selenium Manager look for a driver online
    options = Options()
    options.binary_location = CHROMIUM
    for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={profile}"]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # console: CSP violations, errors
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    if block_websocket:
        # A real block, before any page script runs: the page has no WebSocket at all.
        driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": "delete window.WebSocket;"})
    return driver


BROWSERS = pytest.StashKey[list[tuple[Browser, str]]]()


@pytest.fixture
def browser_factory(stack: Stack, request: pytest.FixtureRequest) -> Iterator[Callable[..., Browser]]:
    """``browser_factory(block_websocket=False, base_url=stack.api.url)``: started browsers are quit
    after the test (their screenshots are taken first, by the report hook below)."""
    started: list[tuple[Browser, str]] = []
    request.node.stash[BROWSERS] = started

    def make(*, block_websocket: bool = False, base_url: str | None = None) -> Browser:
        profile = tempfile.mkdtemp(prefix="draftwire-chromium-")
        browser = Browser(_chromium(Path(profile), block_websocket), base_url or stack.api.url)
        started.append((browser, profile))
        return browser

    yield make
    for browser, profile in started:
        browser.driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def browser(browser_factory: Callable[..., Browser]) -> Browser:
    return browser_factory()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """After each test's body: a screenshot of every page it opened, named in the report (so a
    failure shows where to look) and printed with ``-rA``."""
    outcome = yield
    report = outcome.get_result()
    if report.when != "call":
        return
    paths: list[Path] = []
    for browser, _profile in item.stash.get(BROWSERS, []):
        try:
            paths += browser.screenshots(item.name.replace("[", "-").replace("]", ""))
        except Exception as exc:  # a crashed browser must not hide the test's own failure
            report.sections.append(("screenshots", f"could not take a screenshot: {exc!r}"))
    if paths:
        report.sections.append(("screenshots", "\n".join(str(p) for p in paths)))
