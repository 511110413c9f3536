"""Alertmanager: config check, routing of every alert, inhibitions, and a real Alertmanager run."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from . import stack

PAGER, TICKET = "oncall-pager", "ticket"
SINK_HOST = "http://alert-sink:9095"
"""The webhook host in alertmanager.yml; tests swap it for a local receiver."""


def _amtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [stack.tool("amtool"), *args], capture_output=True, text=True, timeout=30, check=False
    )


def test_config_passes_amtool_check() -> None:
    """amtool accepts compose/alertmanager/alertmanager.yml."""
    result = _amtool("check-config", str(stack.ALERTMANAGER_CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr


def _route(labels: dict[str, str], receiver: str) -> subprocess.CompletedProcess[str]:
    pairs = [f"{k}={v}" for k, v in labels.items()]
    return _amtool(
        "config",
        "routes",
        "test",
        f"--config.file={stack.ALERTMANAGER_CONFIG}",
        f"--verify.receivers={receiver}",
        *pairs,
    )


def test_p1_alert_reaches_the_pager() -> None:
    """A P1 alert (RedisDown) is routed to the on-call pager receiver."""
    result = _route(
        {"alertname": "RedisDown", "severity": "critical", "priority": "P1", "service": "redis"}, PAGER
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_p4_alert_reaches_the_ticket_receiver() -> None:
    """A P4 alert (APIRateLimitSpike) is routed to the ticket receiver, not the pager."""
    result = _route(
        {"alertname": "APIRateLimitSpike", "severity": "info", "priority": "P4", "service": "api"}, TICKET
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_alert_without_priority_still_reaches_a_person() -> None:
    """An alert without a priority label falls through to the ticket receiver."""
    result = _route({"alertname": "Unlabelled"}, TICKET)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("alert", stack.alerts(), ids=str)
def test_every_alert_routes_by_its_priority(alert: stack.Alert) -> None:
    """Every rule's labels route P1/P2 to the pager and P3/P4 to the ticket receiver."""
    receiver = PAGER if alert.labels["priority"] in stack.PAGE_PRIORITIES else TICKET
    result = _route({"alertname": alert.name, **alert.labels}, receiver)
    assert result.returncode == 0, result.stdout + result.stderr


def _config() -> dict[str, Any]:
    return dict(stack.load_yaml(stack.ALERTMANAGER_CONFIG))


def test_grouping_is_by_alertname_and_service() -> None:
    """Notifications are grouped by alertname and service."""
    assert _config()["route"]["group_by"] == ["alertname", "service"]


def test_pagerduty_key_comes_from_a_file() -> None:
    """The pager receiver reads its PagerDuty routing key from a file; no key is in the config."""
    pager = next(r for r in _config()["receivers"] if r["name"] == PAGER)
    (pagerduty,) = pager["pagerduty_configs"]
    assert "routing_key_file" in pagerduty
    assert "routing_key" not in pagerduty
    assert "service_key" not in pagerduty
    assert pager["webhook_configs"], "the pager also posts to a generic webhook"


def _matchers(raw: list[str]) -> dict[str, str]:
    """['alertname=~"A|B"'] -> {'alertname': 'A|B'} (regex or equality alike)."""
    out = {}
    for item in raw:
        name, _, value = item.partition("=")
        out[name] = value.lstrip("~").strip('"')
    return out


def test_inhibitions_name_only_existing_alerts() -> None:
    """RedisDown silences the queue and realtime alerts it causes, DatabaseDown the flush alerts,
    and every alert name in an inhibit rule exists in the rules."""
    names = {a.name for a in stack.alerts()}
    by_source = {}
    for rule in _config()["inhibit_rules"]:
        source = _matchers(rule["source_matchers"])
        target = _matchers(rule["target_matchers"])
        if "alertname" in source:
            assert source["alertname"] in names
            targets = set(target["alertname"].split("|"))
            assert targets <= names, targets - names
            by_source[source["alertname"]] = targets
    assert {
        "QueueBacklogHigh",
        "QueueWorkersStalled",
        "JobRetryStorm",
        "RealtimeRedisReconnecting",
    } <= by_source["RedisDown"]
    assert {"AutosaveFlushFailing", "AutosaveFlushSlow"} <= by_source["DatabaseDown"]


def test_critical_inhibits_warning_of_the_same_alert() -> None:
    """A critical alert silences warning/info alerts with the same alertname and service."""
    rules = [
        r for r in _config()["inhibit_rules"] if _matchers(r["source_matchers"]) == {"severity": "critical"}
    ]
    assert len(rules) == 1
    assert set(_matchers(rules[0]["target_matchers"])["severity"].split("|")) == {"warning", "info"}
    assert set(rules[0]["equal"]) == {"alertname", "service"}


# --- a real Alertmanager ----------------------------------------------------------------------
def _load_sink() -> Any:
    spec = importlib.util.spec_from_file_location("alert_sink", stack.COMPOSE_DIR / "alert-sink" / "sink.py")
    assert spec
    assert spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def sink() -> Iterator[Any]:
    """compose's alert-sink webhook receiver on a loopback port."""
    server = _load_sink().Sink(("127.0.0.1", 0))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _local_config(tmp_path: Path, sink_url: str) -> Path:
    """A copy of alertmanager.yml that sends every notification to ``sink_url``: the webhooks by
    swapping the alert-sink host, PagerDuty through global.pagerduty_url, its key from a temp file."""
    text = stack.ALERTMANAGER_CONFIG.read_text()
    assert SINK_HOST in text
    config = yaml.safe_load(text.replace(SINK_HOST, sink_url))
    key = tmp_path / "pagerduty_routing_key"
    key.write_text("test-routing-key\n")
    config["global"]["pagerduty_url"] = f"{sink_url}/pagerduty"
    for receiver in config["receivers"]:
        for pagerduty in receiver.get("pagerduty_configs", []):
            pagerduty["routing_key_file"] = str(key)
    path = tmp_path / "alertmanager.yml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture
def alertmanager(tmp_path: Path, sink: Any) -> Iterator[str]:
    """prometheus-alertmanager with our config on a free loopback port, clustering off; its URL."""
    sink_url = f"http://127.0.0.1:{sink.server_address[1]}"
    config = _local_config(tmp_path, sink_url)
    port = stack.free_port()
    url = f"http://127.0.0.1:{port}"
    with (tmp_path / "alertmanager.log").open("w") as log:
        process = subprocess.Popen(
            [
                stack.tool("prometheus-alertmanager"),
                f"--config.file={config}",
                f"--storage.path={tmp_path / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--cluster.listen-address=",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            _wait_for(lambda: _get(f"{url}/-/ready") is not None, 20, "Alertmanager ready")
            status = _get(f"{url}/api/v2/status")
            assert status["cluster"]["status"] == "disabled", status["cluster"]
            assert sink_url in status["config"]["original"], "Alertmanager did not load the test's config"
            yield url
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)


def _get(url: str) -> Any:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - loopback URL built here
            body = response.read()
    except OSError:
        return None
    return json.loads(body) if body.strip().startswith((b"[", b"{")) else body


def _post(url: str, payload: Any) -> None:
    request = urllib.request.Request(  # noqa: S310 - loopback URL built here
        url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 - loopback URL built here
        assert response.status == 200


def _wait_for(condition: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.25)
    raise AssertionError(f"timed out after {seconds}s waiting for {what}")


def _alert(name: str, priority: str = "", **extra: str) -> dict[str, Any]:
    """An alert as Prometheus would send it for our rule ``name`` (the one with ``priority``)."""
    rule = next(a for a in stack.alerts() if a.name == name and priority in ("", a.labels["priority"]))
    return {
        "labels": {"alertname": name, **rule.labels, **extra, "instance": "test"},
        "annotations": {"summary": rule.annotations["summary"]},
    }


def _names(notifications: list[dict[str, Any]], path: str) -> set[tuple[str, str]]:
    return {
        (a["labels"]["alertname"], a["labels"].get("severity", ""))
        for n in notifications
        if n["path"] == path
        for a in n["body"]["alerts"]
    }


@pytest.mark.live
def test_real_alertmanager_inhibits_and_routes(alertmanager: str, sink: Any) -> None:
    """In a running Alertmanager with our config: RedisDown silences QueueBacklogHigh, the
    critical APIErrorBudgetBurn silences its warning twin, the P1 alerts arrive at the pager
    (PagerDuty and webhook), an uninhibited P3 arrives at the ticket webhook, and the silenced
    alerts arrive nowhere."""
    _post(
        f"{alertmanager}/api/v2/alerts",
        [
            _alert("RedisDown"),
            _alert("QueueBacklogHigh", queue="draft-build"),
            _alert("APIErrorBudgetBurn", priority="P1"),
            _alert("APIErrorBudgetBurn", priority="P3"),
            _alert("RealtimeConnectionsNearQuota"),
        ],
    )

    def states() -> dict[tuple[str, str], str]:
        return {
            (a["labels"]["alertname"], a["labels"]["severity"]): a["status"]["state"]
            for a in _get(f"{alertmanager}/api/v2/alerts") or []
        }

    _wait_for(lambda: len(states()) == 5, 10, "five alerts in the API")
    assert states() == {
        ("RedisDown", "critical"): "active",
        ("QueueBacklogHigh", "warning"): "suppressed",
        ("APIErrorBudgetBurn", "critical"): "active",
        ("APIErrorBudgetBurn", "warning"): "suppressed",
        ("RealtimeConnectionsNearQuota", "warning"): "active",
    }
    inhibited = {
        a["labels"]["alertname"]: a["status"]["inhibitedBy"]
        for a in _get(f"{alertmanager}/api/v2/alerts")
        if a["status"]["state"] == "suppressed"
    }
    assert all(inhibited.values()), "suppressed by inhibition, not by a silence"

    # amtool's view agrees: inhibited alerts are hidden unless asked for.
    shown = _amtool("alert", "query", f"--alertmanager.url={alertmanager}", "-o", "json")
    assert "QueueBacklogHigh" not in shown.stdout, shown.stderr
    assert "RedisDown" in shown.stdout, shown.stderr
    with_inhibited = _amtool(
        "alert", "query", "--inhibited", f"--alertmanager.url={alertmanager}", "-o", "json"
    )
    assert "QueueBacklogHigh" in with_inhibited.stdout, with_inhibited.stderr

    # What Alertmanager will notify: each aggregation group (group_by alertname, service) with an
    # active alert, at its receiver's hooks; groups whose alerts are all inhibited get nothing.
    groups = _groups(alertmanager)
    assert {(g.receiver, g.labels["alertname"], g.state) for g in groups} == {
        (PAGER, "RedisDown", "active"),
        (PAGER, "APIErrorBudgetBurn", "active"),
        (TICKET, "APIErrorBudgetBurn", "suppressed"),
        (TICKET, "QueueBacklogHigh", "suppressed"),
        (TICKET, "RealtimeConnectionsNearQuota", "active"),
    }
    due = [g for g in groups if g.state == "active"]

    def delivered() -> bool:
        received = sink.snapshot()
        hooks = {(n["path"], n["body"].get("receiver"), json.dumps(n["body"].get("groupLabels"), sort_keys=True))
                 for n in received if n["path"] in ("/page", "/ticket")}
        pages = sum(1 for n in received if n["path"] == "/pagerduty")
        return all(g.hook_key() in hooks for g in due) and pages >= sum(g.receiver == PAGER for g in due)

    # Pages leave after the pager route's 10 s group_wait, tickets after the default 30 s.
    _wait_for(delivered, 60, "a notification for every group with an active alert")
    # Nothing else on its way: Alertmanager counts a notification before sending it, so once its
    # count equals what arrived, no straggler is in flight.
    _wait_for(lambda: _notifications_sent(alertmanager) == len(sink.snapshot()), 15,
              "Alertmanager's notification count to match the sink")
    received = sink.snapshot()
    pagerduty = [n["body"] for n in received if n["path"] == "/pagerduty"]
    assert pagerduty
    assert all(b["routing_key"] == "test-routing-key" for b in pagerduty)
    assert {n["body"]["receiver"] for n in received if n["path"] in ("/page", "/ticket")} == {PAGER, TICKET}
    assert {("RedisDown", "critical"), ("APIErrorBudgetBurn", "critical")} <= _names(received, "/page")
    assert ("RealtimeConnectionsNearQuota", "warning") in _names(received, "/ticket")
    everywhere = _names(received, "/page") | _names(received, "/ticket")
    assert ("QueueBacklogHigh", "warning") not in everywhere
    assert ("APIErrorBudgetBurn", "warning") not in everywhere
    # Still held back by inhibition now that every group has been flushed.
    assert {(g.labels["alertname"], g.state) for g in _groups(alertmanager) if g.state == "suppressed"} == {
        ("APIErrorBudgetBurn", "suppressed"), ("QueueBacklogHigh", "suppressed")}


@dataclass(frozen=True)
class Group:
    """One aggregation group as ``/api/v2/alerts/groups`` reports it."""

    receiver: str
    labels: dict[str, str]
    state: str
    """``active`` if any of its alerts is, else the state they share (``suppressed``)."""

    def hook_key(self) -> tuple[str, str, str]:
        """(webhook path, receiver, group labels) as this group's webhook notification carries them."""
        path = "/page" if self.receiver == PAGER else "/ticket"
        return path, self.receiver, json.dumps(self.labels, sort_keys=True)


def _groups(alertmanager: str) -> list[Group]:
    groups = []
    for raw in _get(f"{alertmanager}/api/v2/alerts/groups") or []:
        states = {a["status"]["state"] for a in raw["alerts"]}
        state = "active" if "active" in states else "/".join(sorted(states))
        groups.append(Group(raw["receiver"]["name"], raw["labels"], state))
    return groups


def _notifications_sent(alertmanager: str) -> float:
    """``alertmanager_notifications_total`` over every integration, from Alertmanager's /metrics."""
    text = _get(f"{alertmanager}/metrics")
    assert isinstance(text, bytes)
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.decode().splitlines()
        if line.startswith("alertmanager_notifications_total{")
    )
