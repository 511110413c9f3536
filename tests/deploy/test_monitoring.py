"""The monitoring component is generated from one source each and says what the source says:
PrometheusRules equal alerts/ and pass promtool, dashboard ConfigMaps equal dashboards/, the
AlertmanagerConfig routes as compose/alertmanager/ does, and every job the alerts select is a
Service the ServiceMonitors scrape."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.deploy.rendered import KUBE, ROOT, of_kind

GENERATE = KUBE / "generate.py"


def test_generated_files_are_up_to_date() -> None:
    """generate.py --check passes: the committed PrometheusRules, dashboards and AlertmanagerConfig match their sources."""
    done = subprocess.run([sys.executable, str(GENERATE), "--check"], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr


def test_check_fails_on_drift(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """--check fails, naming the file, when a generated file is edited by hand (the drift test can fail)."""
    spec = importlib.util.spec_from_file_location("k8s_generate", GENERATE)
    assert spec and spec.loader
    generate = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generate)
    copy = tmp_path / "monitoring"
    shutil.copytree(generate.OUT, copy)
    rules = copy / "prometheusrules.yaml"
    rules.write_text(rules.read_text().replace("for: 5m", "for: 6m", 1))
    monkeypatch.setattr(generate, "OUT", copy)
    assert generate.main(["--check"]) == 1
    assert "prometheusrules.yaml" in capsys.readouterr().err


def test_prometheus_rules_equal_alerts_and_pass_promtool(tmp_path: Path) -> None:
    """The rendered PrometheusRules hold exactly alerts/*.rules.yml's groups, and promtool accepts them."""
    rendered = {r["metadata"]["annotations"]["draftwire/source"]: r["spec"]["groups"] for r in of_kind("production", "PrometheusRule")}
    sources = {f"alerts/{p.name}": yaml.safe_load(p.read_text())["groups"] for p in sorted((ROOT / "alerts").glob("*.rules.yml"))}
    assert rendered == sources
    path = tmp_path / "rules.yml"
    path.write_text(yaml.safe_dump({"groups": [g for groups in rendered.values() for g in groups]}))
    promtool = shutil.which("promtool")
    assert promtool, "promtool is needed (Debian package prometheus; make system-deps installs it)"
    done = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    alerts = sum(1 for groups in sources.values() for g in groups for r in g["rules"] if "alert" in r)
    assert f"SUCCESS: {sum(len(g['rules']) for gs in sources.values() for g in gs)} rules found" in done.stdout and alerts > 0


def test_dashboard_configmaps_equal_dashboards() -> None:
    """One ConfigMap per dashboards/*.json, labelled for Grafana's sidecar, holding that dashboard."""
    maps = of_kind("production", "ConfigMap")
    boards = {}
    for cm in maps:
        if cm["metadata"].get("labels", {}).get("grafana_dashboard") == "1":
            ((key, text),) = cm["data"].items()
            boards[key] = json.loads(text)
    expected = {f"draftwire-{p.stem}.json": json.loads(p.read_text()) for p in sorted((ROOT / "dashboards").glob("*.json"))}
    assert boards == expected


def test_alertmanager_config_routes_as_compose_does() -> None:
    """Same receivers, route matchers, timings and inhibit rules as compose/alertmanager/alertmanager.yml;
    the PagerDuty key and webhook URLs come from a Secret, never inlined."""
    (config,) = of_kind("production", "AlertmanagerConfig")
    source = yaml.safe_load((ROOT / "compose" / "alertmanager" / "alertmanager.yml").read_text())
    spec = config["spec"]
    assert [r["name"] for r in spec["receivers"]] == [r["name"] for r in source["receivers"]]
    assert spec["route"]["receiver"] == source["route"]["receiver"]
    assert spec["route"]["groupBy"] == source["route"]["group_by"]
    for ours, theirs in zip(spec["route"]["routes"], source["route"]["routes"], strict=True):
        assert ours["receiver"] == theirs["receiver"]
        assert [f'{m["name"]}{m["matchType"]}"{m["value"]}"' for m in ours["matchers"]] == theirs["matchers"]
        assert ours.get("repeatInterval") == theirs.get("repeat_interval")
    assert len(spec["inhibitRules"]) == len(source["inhibit_rules"])
    for rule, theirs in zip(spec["inhibitRules"], source["inhibit_rules"], strict=True):
        assert [f'{m["name"]}{m["matchType"]}"{m["value"]}"' for m in rule["sourceMatch"]] == [
            re.sub(r'=(?!~)"?([^"]*)"?$', r'="\1"', m) for m in theirs["source_matchers"]
        ]
        assert rule.get("equal") == theirs.get("equal")
    text = json.dumps(spec)
    assert "http://" not in text and "https://" not in text and "routing_key" not in text


def test_alert_jobs_are_scraped_services() -> None:
    """Every job="..." an alert selects is a Service that a ServiceMonitor scrapes (the job label is the Service name)."""
    jobs = set()
    for path in (ROOT / "alerts").glob("*.rules.yml"):
        for found in re.findall(r'job=~?"([^"]+)"', path.read_text()):
            jobs |= set(found.split("|"))
    services = {s["metadata"]["name"]: s for s in of_kind("production", "Service")}
    monitored = set()
    for monitor in of_kind("production", "ServiceMonitor"):
        wanted = monitor["spec"]["selector"]["matchLabels"]
        ports = {e["port"] for e in monitor["spec"]["endpoints"]}
        for name, svc in services.items():
            labels = svc["metadata"].get("labels", {})
            if all(labels.get(k) == v for k, v in wanted.items()) and ports <= {p["name"] for p in svc["spec"]["ports"]}:
                monitored.add(name)
    assert jobs <= monitored, f"alerts select jobs no ServiceMonitor scrapes: {sorted(jobs - monitored)}"
    assert monitored == {"draftwire-api", "draftwire-gateway", "draftwire-worker"}
