"""Grafana dashboards and provisioning: generated JSON up to date, every panel queryable."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from . import stack

PANELS = list(stack.panels())
PROVISIONING = stack.COMPOSE_DIR / "grafana" / "provisioning"


def _panel_id(item: tuple[str, dict[str, Any]]) -> str:
    return f"{item[0]}:{item[1]['title']}"


def test_the_five_dashboards_exist() -> None:
    """Overview, Autosave, Queue, Realtime and SLO dashboards are committed, with unique uids."""
    boards = stack.dashboards()
    assert set(boards) == {"overview", "autosave", "queue", "realtime", "slo"}
    assert len({b["uid"] for b in boards.values()}) == len(boards)


def test_committed_json_matches_the_generator() -> None:
    """dashboards/generate.py --check passes: nobody edited the JSON by hand or forgot to regenerate."""
    result = subprocess.run(
        [sys.executable, str(stack.DASHBOARDS / "generate.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("item", PANELS, ids=_panel_id)
def test_panel_has_datasource_and_queries(item: tuple[str, dict[str, Any]]) -> None:
    """Every panel uses the Prometheus datasource uid and has at least one target, each with a
    unique refId and a PromQL expr."""
    _, panel = item
    assert panel["datasource"] == {"type": "prometheus", "uid": "prometheus"}
    targets = panel["targets"]
    assert targets
    assert all(t["expr"].strip() and t["datasource"]["uid"] == "prometheus" for t in targets)
    ref_ids = [t["refId"] for t in targets]
    assert all(ref_ids)
    assert len(set(ref_ids)) == len(ref_ids)


def test_every_dashboard_query_is_valid_promql(tmp_path: Path) -> None:
    """promtool parses every dashboard query (as a recording rule, Grafana's $__rate_interval
    replaced by a duration)."""
    exprs = stack.dashboard_expressions()
    rules = [
        {"record": f"dashboard:query:{i}", "expr": e.replace("$__rate_interval", "5m")}
        for i, e in enumerate(exprs)
    ]
    path = tmp_path / "dashboard-queries.rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard-queries", "rules": rules}]}))
    result = subprocess.run(
        [stack.tool("promtool"), "check", "rules", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _lines(title_part: str, board: str) -> set[float]:
    """Threshold values of the panels of ``board`` whose title contains ``title_part``."""
    values: set[float] = set()
    for stem, panel in PANELS:
        if stem == board and title_part in panel["title"]:
            defaults = panel["fieldConfig"]["defaults"]
            assert defaults["custom"]["thresholdsStyle"]["mode"] != "off"
            values |= {s["value"] for s in defaults["thresholds"]["steps"] if s["value"] is not None}
    return values


@pytest.mark.parametrize(
    ("board", "title", "expected"),
    [
        ("autosave", "POST /api/autosave latency", {0.5}),
        ("autosave", "batch write latency", {0.2}),
        ("realtime", "Catch-up replay latency", {1.2, 1.5}),
        ("realtime", "Broadcast latency", {0.6}),
        ("realtime", "connections per gateway (or API) process", {400, 500}),
        ("queue", "Jobs waiting", {100}),
        ("slo", "POST /api/autosave latency", {0.5}),
        ("slo", "Catch-up replay latency", {1.2, 1.5}),
        ("slo", "Broadcast latency", {0.6}),
        ("slo", "connections per gateway (or API) process", {500}),
        ("overview", "burn rate", {14.4, 6}),
    ],
)
def test_slo_thresholds_are_drawn_as_lines(board: str, title: str, expected: set[float]) -> None:
    """The contract's SLO thresholds appear as threshold lines on the panels that show them."""
    assert expected <= _lines(title, board)


def test_fault_only_panels_are_marked() -> None:
    """Panels that only have data during a fault say [fault-only]: failed jobs, retries, sequence
    gaps, reconnects, rejections and rate limits; ordinary panels do not."""
    marked = {p["title"] for _, p in PANELS if "[fault-only]" in p.get("description", "")}
    assert {
        "Permanent failures",
        "Retries per queue",
        "Sequence gaps detected",
        "Redis subscriber reconnects",
        "Rejected connections by reason",
        "Rate-limited requests",
    } == marked


def test_latency_panels_request_exemplars() -> None:
    """Latency quantile queries ask for exemplars, so a slow point links to its trace in Tempo."""
    for _, panel in PANELS:
        for target in panel["targets"]:
            if "_seconds_bucket" in target["expr"]:
                assert target["exemplar"] is True, panel["title"]


def test_datasources_are_provisioned_with_fixed_uids_and_exemplar_links() -> None:
    """Grafana gets Prometheus (uid prometheus) whose trace_id exemplars open Tempo (uid tempo)."""
    config = stack.load_yaml(PROVISIONING / "datasources" / "datasources.yaml")
    by_uid = {d["uid"]: d for d in config["datasources"]}
    assert by_uid["prometheus"]["type"] == "prometheus"
    assert by_uid["tempo"]["type"] == "tempo"
    links = by_uid["prometheus"]["jsonData"]["exemplarTraceIdDestinations"]
    assert {"name": "trace_id", "datasourceUid": "tempo"} in links


def test_dashboard_provider_reads_the_mounted_folder() -> None:
    """The dashboard provider's path is where compose mounts dashboards/."""
    config = stack.load_yaml(PROVISIONING / "dashboards" / "dashboards.yaml")
    (provider,) = config["providers"]
    compose = stack.load_yaml(stack.COMPOSE_FILE)
    mounts = compose["services"]["grafana"]["volumes"]
    assert f"../dashboards:{provider['options']['path']}:ro" in mounts
