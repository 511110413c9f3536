"""The drill machinery: the overlay is generated from the committed rules (only clocks change),
every alert is drilled or explained, every runbook section has Check commands the drill can run,
and a short subset of the drills runs end to end on a live stack (``make drill`` runs them all)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from drills import ALL, EXPLAINED
from drills.live import Live, live_stack
from drills.overlay import FACTOR, FACTOR_OVERRIDES, scale_expr, scaled, scaled_alertmanager, scaled_rules
from drills.runbook import VARIABLES, check_commands, compose_only, documented_variables, helper_functions
from drills.runner import run_drill
from tests.monitoring import stack


def test_durations_scale_by_the_factor() -> None:
    """5m at factor 60 is 5s, 1h is 60s, 0m stays 0s, nothing drops below 1s."""
    assert [scaled(d, 60) for d in ("5m", "1h", "0m", "30s", "1h30m")] == ["5s", "60s", "0s", "1s", "90s"]
    assert scale_expr("rate(x[5m]) / rate(y[1d:5m])", 60) == "rate(x[5s]) / rate(y[1440s:5m])"


def test_overlay_changes_only_clocks(tmp_path: Path) -> None:
    """Each generated rule equals its committed rule once `for` and range windows are put back
    through the same scaling: expressions, thresholds, labels and annotations are untouched."""
    generated = scaled_rules(tmp_path)
    assert [p.name for p in generated] == [p.name for p in stack.RULE_FILES]
    for source, copy in zip(stack.RULE_FILES, generated, strict=True):
        for group_a, group_b in zip(stack.load_yaml(source)["groups"], stack.load_yaml(copy)["groups"], strict=True):
            for a, b in zip(group_a["rules"], group_b["rules"], strict=True):
                factor = FACTOR_OVERRIDES.get(a.get("alert", ""), FACTOR)
                assert b["expr"] == scale_expr(a["expr"], factor)
                assert re.sub(r"\[[^\]]+\]", "[]", b["expr"]) == re.sub(r"\[[^\]]+\]", "[]", a["expr"])
                if "for" in a:
                    assert b["for"] == scaled(a["for"], factor)
                assert {k: v for k, v in a.items() if k not in ("expr", "for")} == \
                    {k: v for k, v in b.items() if k not in ("expr", "for")}


def test_alertmanager_overlay_keeps_routing() -> None:
    """Routes, matchers, receivers and inhibitions are compose's; only grouping timers differ."""
    config = stack.load_yaml(stack.ALERTMANAGER_CONFIG)
    scaled_config = scaled_alertmanager(config)

    def strip(route: dict) -> dict:  # type: ignore[type-arg]
        return {k: ([strip(r) for r in v] if k == "routes" else v) for k, v in route.items()
                if k not in ("group_wait", "group_interval", "repeat_interval")}

    assert strip(scaled_config["route"]) == strip(config["route"])
    assert scaled_config["receivers"] == config["receivers"]
    assert scaled_config["inhibit_rules"] == config["inhibit_rules"]


def test_every_alert_is_drilled_or_explained() -> None:
    """Each alerting rule (name and priority) has a drill, or a stated reason it has none."""
    rules = {(a.name, a.labels["priority"]) for a in stack.alerts()}
    from drills.runner import rule_labels

    drilled = {(d.alert, rule_labels(d.alert, d.labels)["priority"]) for d in ALL}
    explained = {e.alert for e in EXPLAINED}
    assert {r for r in rules if r not in drilled and r[0] not in explained} == set()


def test_runbook_checks_are_extracted_and_runnable() -> None:
    """Every drilled alert's runbook section has Check commands; the drill can run most of
    them (only `dc` lines are compose-only); the README documents the variables drills set."""
    assert set(VARIABLES) <= documented_variables()
    assert any(f.startswith("promq()") for f in helper_functions())
    for drill in ALL:
        commands = check_commands(drill.domain, drill.alert)
        assert commands, drill.alert
        assert any(not compose_only(c) for c in commands), f"{drill.alert}: every Check needs compose"
        for command in commands:
            assert not re.search(r"localhost:\d+", command), f"{drill.alert}: fixed port in {command!r}"


@pytest.fixture(scope="module")
def live() -> Iterator[Live]:
    with live_stack() as running:
        yield running


@pytest.mark.timeout(400)
async def test_quick_drills_fire_route_check_and_resolve(live: Live) -> None:
    """The short subset (RedisDown, APIRateLimitSpike, JobFailedPermanently, RealtimeSequenceGap):
    each fault fires its alert, Alertmanager routes it by priority, the runbook's Checks run and
    show the fault, and the remedy resolves it."""
    quick = [d for d in ALL if d.quick]
    assert len(quick) >= 3
    results = [await run_drill(live, d, print) for d in quick]
    await live.aclose()
    assert [(r.key, r.verdict) for r in results] == [(r.key, "pass") for r in results], \
        yaml.safe_dump([r.__dict__ for r in results])
