"""One drill, end to end: fault, fire, route, runbook checks, remedy, resolve; and the report."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from typing import Any

import psycopg
import yaml

from devstack.monitoring import RULES_DIR
from drills.faults import Background
from drills.live import Live, wait_until
from drills.model import Drill, Explained, Result
from drills.runbook import check_commands, run_checks

PAGE = {"P1", "P2"}
ROUTES = {True: ("oncall-pager", "/page"), False: ("ticket", "/ticket")}
"""Receiver and alert-sink path a page (P1/P2) or a ticket (P3/P4) reaches (alertmanager.yml)."""
ROUTE_TIMEOUT_S = 60.0
CONNECT_FAILURES = {7, 28}
"""curl: could not connect, timed out (a Check aimed at the process that is down)."""


def rule_labels(alert: str, labels: dict[str, str]) -> dict[str, str]:
    """The labels of the committed rule named ``alert`` whose labels include ``labels``."""
    for path in sorted(RULES_DIR.glob("*.rules.yml")):
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                found = {k: str(v) for k, v in (rule.get("labels") or {}).items()}
                if rule.get("alert") == alert and labels.items() <= found.items():
                    return found
    raise LookupError(f"no rule {alert} with labels {labels} in alerts/")


async def heal(live: Live) -> None:
    """Whatever a failed drill left broken, put back: Redis, Postgres, our processes."""
    if live.redis.proc is None or live.redis.proc.poll() is not None:
        live.redis.start()
    try:
        async with await psycopg.AsyncConnection.connect(live.pg.url, connect_timeout=2):
            pass
    except psycopg.Error:
        await asyncio.to_thread(live.pg.start)
    for proc in (live.api, live.api2, live.worker):
        if not proc.running():
            await asyncio.to_thread(proc.start)


async def run_drill(live: Live, drill: Drill, say: Callable[[str], None]) -> Result:
    """Run ``drill`` on ``live``; never raises for a drill's failure (it is in the verdict)."""
    labels = rule_labels(drill.alert, drill.labels)
    priority = labels["priority"]
    result = Result(drill.key, drill.alert, priority, drill.fault, drill.remedy)
    match = {**drill.labels, "priority": priority}
    bg = Background()
    try:
        live.fresh_monitoring(drill.key.lower())
        await live.wait_targets()
        mark = await live.sink_mark()
        say(f"[{drill.key}] fault: {drill.fault}")
        started = time.monotonic()
        await drill.produce(live, bg)
        await wait_until(f"{drill.alert} firing in Prometheus",
                         lambda: _nonempty(live.prom_alerts(drill.alert, match)), drill.fire_timeout)
        result.fire_s = time.monotonic() - started
        say(f"[{drill.key}] firing after {result.fire_s:.1f} s")
        receiver, path = ROUTES[priority in PAGE]

        async def routed() -> bool:
            found = await live.manager_alerts(drill.alert, match)
            names = {r["name"] for a in found for r in a["receivers"] if a["status"]["state"] == "active"}
            sent = [n for n in await live.received(drill.alert, mark)
                    if n["path"] == path and n["body"]["receiver"] == receiver and n["body"]["status"] == "firing"]
            return receiver in names and bool(sent)

        try:
            await wait_until(f"{drill.alert} delivered to {receiver} ({path})", routed, ROUTE_TIMEOUT_S)
        except TimeoutError as exc:
            found = await live.manager_alerts(drill.alert, {})
            seen = [(a["status"], [r["name"] for r in a["receivers"]]) for a in found]
            raise TimeoutError(f"{exc}; Alertmanager has {seen}") from None
        result.route = f"{priority} -> {receiver} ({path})"
        say(f"[{drill.key}] routed: {result.route}")
        commands = check_commands(drill.domain, drill.alert)
        runs = await asyncio.to_thread(run_checks, commands, live.variables(), live.logs_dir)
        ok = {0} | (CONNECT_FAILURES if drill.process_down else set())
        result.checks_total = len(runs)
        result.checks_ran = sum(r.ran for r in runs)
        result.checks_skipped = [r.command for r in runs if not r.ran]
        result.checks_failed = [f"{r.command} -> exit {r.code}: {r.output[-200:]}" for r in runs
                                if r.ran and r.code not in ok]
        for r in runs:
            first = " ".join(r.output.split())[:160] if r.ran else r.skipped
            say(f"[{drill.key}]   $ {r.command[:90]} -> {r.code if r.ran else 'skipped'}: {first}")
        result.shown = any(_shows(drill, r.output) for r in runs if r.ran)
        say(f"[{drill.key}] checks: {result.checks_ran} run, {len(result.checks_skipped)} compose-only, "
            f"{len(result.checks_failed)} failed, fault shown: {result.shown}")
        remedied = time.monotonic()
        say(f"[{drill.key}] remedy: {drill.remedy}")
        await drill.apply_remedy(live, bg)
        await wait_until(f"{drill.alert} resolved in Prometheus", lambda: _cleared(live, drill.alert, match),
                         drill.resolve_timeout)
        result.resolve_s = time.monotonic() - remedied
        say(f"[{drill.key}] resolved {result.resolve_s:.1f} s after the remedy")
        result.resolved_notified = await _resolved_sent(live, drill.alert, mark, path)
    except Exception as exc:
        result.error = f"{type(exc).__name__}: {exc}"[:300]
        say(f"[{drill.key}] FAILED: {result.error}")
    finally:
        await bg.stop()
        await heal(live)
    return result


def _shows(drill: Drill, output: str) -> bool:
    if callable(drill.shows):
        return drill.shows(output)
    return re.search(drill.shows, output, re.M) is not None


async def _nonempty(found: Any) -> bool:
    return bool(await found)


async def _cleared(live: Live, alert: str, match: dict[str, str]) -> bool:
    return not (await live.prom_alerts(alert, match) or await live.prom_alerts(alert, match, "pending"))


async def _resolved_sent(live: Live, alert: str, mark: int, path: str) -> bool:
    """Whether the receiver got the resolved notification (waits a few group intervals)."""
    try:
        await wait_until("resolved notification", lambda: _has_resolved(live, alert, mark, path), 15)
    except TimeoutError:
        return False
    return True


async def _has_resolved(live: Live, alert: str, mark: int, path: str) -> bool:
    return any(n["path"] == path and n["body"]["status"] == "resolved" for n in await live.received(alert, mark))


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f} s"


def table(results: list[Result], explained: list[Explained]) -> str:
    """The drills' report as a Markdown table."""
    lines = ["| alert | priority | fault | time to fire | route | checks run | remedy | time to resolve | verdict |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        checks = f"{r.checks_ran}/{r.checks_total}" + (f" ({len(r.checks_skipped)} compose-only)"
                                                      if r.checks_skipped else "")
        resolved = _s(r.resolve_s) + (" (resolved sent)" if r.resolved_notified else "")
        lines.append(f"| {r.alert} | {r.priority} | {r.fault} | {_s(r.fire_s)} | {r.route or '-'} | {checks} "
                     f"| {r.remedy} | {resolved} | {r.verdict} |")
    for e in explained:
        lines.append(f"| {e.alert} | - | not drilled live: {e.why} | - | - | - | - | - | promtool: "
                     f"alerts/tests/{e.domain}.test.yml |")
    return "\n".join(lines)
