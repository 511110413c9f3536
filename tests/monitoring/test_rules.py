"""Alert rules: promtool checks, unit tests, labels, annotations and runbook links."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from . import stack

ALERTS = stack.alerts()


def _promtool(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [stack.tool("promtool"), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        check=False,
    )


@pytest.mark.parametrize("path", stack.RULE_FILES, ids=lambda p: p.name)
def test_rules_file_passes_promtool_check(path: Path) -> None:
    """promtool accepts the rules file: valid YAML, valid PromQL, valid templates."""
    result = _promtool("check", "rules", path)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("path", stack.TEST_FILES, ids=lambda p: p.name)
def test_rules_unit_tests_pass(path: Path) -> None:
    """The promtool unit tests of one rules file pass (each alert silent before its `for`, firing at it)."""
    result = _promtool("test", "rules", path.name, cwd=path.parent)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_domain_has_rules_and_tests() -> None:
    """Each domain of the issue has a rules file, and every rules file has a promtool test file."""
    domains = {p.name.removesuffix(".rules.yml") for p in stack.RULE_FILES}
    assert domains >= {"http", "autosave", "queue", "realtime", "dependencies", "slo", "backup"}
    tested = {p.name.removesuffix(".test.yml") for p in stack.TEST_FILES}
    assert tested == domains


@pytest.mark.parametrize("path", stack.TEST_FILES, ids=lambda p: p.name)
def test_test_file_covers_each_alert_before_and_at_for(path: Path) -> None:
    """For every alert of its rules file the test file checks a silent time and a firing time,
    and the silent check comes before the first firing check."""
    spec = stack.load_yaml(path)
    rules_file = (path.parent / spec["rule_files"][0]).resolve()
    names = {a.name for a in ALERTS if a.file == rules_file}
    checks: dict[str, list[tuple[int, bool]]] = {n: [] for n in names}
    for group in spec["tests"]:
        for check in group.get("alert_rule_test", []):
            checks.setdefault(check["alertname"], []).append(
                (_minutes(check["eval_time"]), bool(check.get("exp_alerts")))
            )
    for name in names:
        firing = [t for t, fires in checks[name] if fires]
        silent = [t for t, fires in checks[name] if not fires]
        assert firing, f"{name}: no check where it fires"
        assert silent, f"{name}: no check where it is silent"
        assert min(silent) < min(firing), f"{name}: no silent check before it fires"


def _minutes(duration: str) -> int:
    total = 0
    for value, unit in re.findall(r"(\d+)([dhm])", duration):
        total += int(value) * {"d": 1440, "h": 60, "m": 1}[unit]
    return total


@pytest.mark.parametrize("alert", ALERTS, ids=str)
def test_alert_has_required_labels_and_annotations(alert: stack.Alert) -> None:
    """Every alert has severity, a P1-P4 priority that agrees with it, a service, a summary,
    a templated description and a `for`."""
    labels, annotations = alert.labels, alert.annotations
    assert labels.get("severity") in stack.SEVERITIES
    assert labels.get("priority") in stack.PRIORITIES
    assert labels.get("service") in stack.SERVICES
    pages = labels["priority"] in stack.PAGE_PRIORITIES
    assert pages == (labels["severity"] == "critical"), (
        "critical pages (P1/P2); warning/info open tickets (P3/P4)"
    )
    assert annotations.get("summary")
    assert "$labels" in annotations.get("description", "") or "$value" in annotations.get("description", "")
    assert "for" in alert.rule


@pytest.mark.parametrize("alert", ALERTS, ids=str)
def test_runbook_url_resolves_to_a_heading(alert: stack.Alert) -> None:
    """runbook_url is docs/runbooks/<domain>.md#<lowercase alert name> and that heading exists."""
    url = alert.annotations.get("runbook_url", "")
    assert url == f"docs/runbooks/{alert.domain}.md#{alert.name.lower()}"
    page, anchor = url.split("#")
    path = stack.REPO / page
    assert path.is_file(), f"{page} is missing"
    assert anchor in stack.markdown_anchors(path), f"no heading for #{anchor} in {page}"


@pytest.mark.parametrize("alert", ALERTS, ids=str)
def test_runbook_section_states_the_alerts_labels(alert: stack.Alert) -> None:
    """The runbook section's first line names the alert's severity, priority and service, so the
    page an on-call reads agrees with what paged them."""
    section = stack.markdown_section(stack.RUNBOOKS / f"{alert.domain}.md", alert.name)
    first = next((line for line in section.splitlines() if line.startswith("**Severity**")), "")
    for label in ("severity", "priority", "service"):
        assert alert.labels[label] in first, (
            f"{alert.name}: {label} {alert.labels[label]} missing from {first!r}"
        )
    for heading in ("**Symptoms.**", "**Check.**", "**Remediation.**", "**Verify.**"):
        assert heading in section, f"{alert.name}: no {heading}"


def test_runbook_index_lists_every_domain_file() -> None:
    """docs/runbooks/README.md links every runbook file, and every rules domain has a runbook file
    (deploy.md and security.md are the operations runbooks that belong to no alert domain)."""
    index = (stack.RUNBOOKS / "README.md").read_text()
    pages = {p.name for p in stack.RUNBOOKS.glob("*.md")} - {"README.md"}
    assert pages - {"deploy.md", "security.md"} == {f"{p.name.removesuffix('.rules.yml')}.md" for p in stack.RULE_FILES}
    for page in pages:
        assert f"]({page})" in index


def test_runbook_links_resolve() -> None:
    """Every relative link between runbooks (file.md, file.md#anchor, #anchor) points at an
    existing file and heading."""
    for page in stack.RUNBOOKS.glob("*.md"):
        for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
            if "://" in target:
                continue
            file_part, _, anchor = target.partition("#")
            path = (page.parent / file_part).resolve() if file_part else page
            assert path.exists(), f"{page.name}: link to missing {target}"
            if anchor:
                assert anchor in stack.markdown_anchors(path), f"{page.name}: no heading for {target}"


def test_contract_slo_rows_have_alerts() -> None:
    """Each row of the contract's SLO table has an alert with the contract's threshold in its rule."""
    by_name: dict[str, str] = {}
    for a in ALERTS:
        by_name[a.name] = by_name.get(a.name, "") + str(a.rule["expr"])
    expected = {
        "AutosaveLatencyHigh": "> 0.5",
        "APIHighErrorRate": "> 0.05",
        "QueueBacklogHigh": "> 100",
        "QueueWorkersStalled": 'status="done"',
        "JobRetryStorm": "job_retries_total",
        "JobFailedPermanently": 'status="failed"',
        "APINotReady": "readyz_up",
        "RedisDown": "redis_up",
        "DatabaseDown": "database_up",
        "RealtimeCatchupSlow": "> 1.2",
        "RealtimeBroadcastLatencyHigh": "> 0.6",
        "RealtimeSequenceGap": "realtime_sequence_gaps_total",
        "RealtimeConnectionsNearQuota": "0.8 * realtime_max_connections",
        "RealtimeRedisReconnecting": "> 3",
        "AutosaveFlushSlow": "> 0.2",
        "AutosaveFlushFailing": "> 0.01",
        "APIErrorBudgetBurn": "14.4 * 0.005",
        "APIRateLimitSpike": "rate_limit_events_total",
        "BackupTooOld": "26 * 3600",
    }
    for name, fragment in expected.items():
        assert fragment in by_name.get(name, ""), f"{name} should contain {fragment!r}"


def test_burn_rate_alerts_cover_the_four_windows() -> None:
    """The availability SLO has the four multiwindow rules: two pages and two tickets."""
    burns = {
        (a.labels["long_window"], a.labels["severity"], a.labels["priority"], str(a.rule["for"]))
        for a in ALERTS
        if a.name == "APIErrorBudgetBurn"
    }
    assert burns == {
        ("1h", "critical", "P1", "2m"),
        ("6h", "critical", "P2", "15m"),
        ("1d", "warning", "P3", "1h"),
        ("3d", "info", "P4", "3h"),
    }
    exprs = {str(a.rule["expr"]) for a in ALERTS if a.name == "APIErrorBudgetBurn"}
    for long, short, factor in (
        ("1h", "5m", "14.4"),
        ("6h", "30m", "6"),
        ("1d", "2h", "3"),
        ("3d", "6h", "1"),
    ):
        assert any(
            f"ratio_rate{long} > ({factor} * 0.005)" in e and f"ratio_rate{short} > ({factor} * 0.005)" in e
            for e in exprs
        ), (long, short)


def test_prometheus_config_passes_promtool_with_our_rules(tmp_path: Path) -> None:
    """compose/prometheus/prometheus.yml is valid and loads every rules file through `rules/`,
    laid out as compose mounts it."""
    (tmp_path / "prometheus.yml").write_text(stack.PROMETHEUS_CONFIG.read_text())
    (tmp_path / "rules").symlink_to(stack.ALERTS, target_is_directory=True)
    result = _promtool("check", "config", tmp_path / "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(stack.RULE_FILES)} rule files found" in result.stdout
