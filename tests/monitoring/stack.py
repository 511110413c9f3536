"""Where the monitoring files live and small readers for them, shared by the tests."""

from __future__ import annotations

import json
import re
import shutil
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
ALERTS = REPO / "alerts"
RULE_FILES = sorted(ALERTS.glob("*.rules.yml"))
TEST_FILES = sorted((ALERTS / "tests").glob("*.test.yml"))
DASHBOARDS = REPO / "dashboards"
DASHBOARD_FILES = sorted(DASHBOARDS.glob("*.json"))
RUNBOOKS = REPO / "docs" / "runbooks"
COMPOSE_DIR = REPO / "compose"
COMPOSE_FILE = COMPOSE_DIR / "compose.yaml"
ALERTMANAGER_CONFIG = COMPOSE_DIR / "alertmanager" / "alertmanager.yml"
PROMETHEUS_CONFIG = COMPOSE_DIR / "prometheus" / "prometheus.yml"
SHARED = REPO.parent / "shared"
COMPOSE_SCHEMA = SHARED / "schemas" / "compose-spec.json"
CONTRACT = SHARED / "spec" / "CONTRACT.md"

SEVERITIES = {"critical", "warning", "info"}
PRIORITIES = {"P1", "P2", "P3", "P4"}
SERVICES = {"api", "worker", "realtime", "database", "redis", "backup"}
PAGE_PRIORITIES = {"P1", "P2"}
"""Priorities that page the on-call; the others open a ticket (docs/runbooks/README.md)."""


@dataclass(frozen=True)
class Alert:
    """One alerting rule and the rules file it lives in."""

    file: Path
    rule: dict[str, Any]

    @property
    def name(self) -> str:
        return str(self.rule["alert"])

    @property
    def labels(self) -> dict[str, str]:
        return {k: str(v) for k, v in (self.rule.get("labels") or {}).items()}

    @property
    def annotations(self) -> dict[str, str]:
        return {k: str(v) for k, v in (self.rule.get("annotations") or {}).items()}

    @property
    def domain(self) -> str:
        return self.file.name.removesuffix(".rules.yml")

    def __str__(self) -> str:
        return f"{self.domain}:{self.name}:{self.labels.get('priority')}"


def load_yaml(path: Path) -> Any:
    """A YAML file, parsed."""
    return yaml.safe_load(path.read_text())


def rules(path: Path) -> Iterator[dict[str, Any]]:
    """Every rule (alerting and recording) of one rules file."""
    for group in load_yaml(path)["groups"]:
        yield from group["rules"]


def alerts() -> list[Alert]:
    """Every alerting rule of every rules file."""
    return [Alert(path, rule) for path in RULE_FILES for rule in rules(path) if "alert" in rule]


def recorded_names() -> set[str]:
    """Names of the series our recording rules write."""
    return {rule["record"] for path in RULE_FILES for rule in rules(path) if "record" in rule}


def rule_expressions() -> list[str]:
    """The PromQL of every rule."""
    return [str(rule["expr"]) for path in RULE_FILES for rule in rules(path)]


def dashboards() -> dict[str, dict[str, Any]]:
    """Every committed dashboard JSON by file stem."""
    return {path.stem: json.loads(path.read_text()) for path in DASHBOARD_FILES}


def panels() -> Iterator[tuple[str, dict[str, Any]]]:
    """(dashboard stem, panel) for every panel, rows' nested panels included."""
    for stem, board in dashboards().items():
        for panel in board["panels"]:
            yield stem, panel
            yield from ((stem, p) for p in panel.get("panels", []))


def dashboard_expressions() -> list[str]:
    """The PromQL of every dashboard target."""
    return [t["expr"] for _, panel in panels() for t in panel.get("targets", []) if t.get("expr")]


def github_anchor(heading: str) -> str:
    """GitHub's anchor for a Markdown heading: lowercase, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def markdown_anchors(path: Path) -> set[str]:
    """Every heading anchor of a Markdown file (fenced code blocks skipped; repeats get -1, -2)."""
    anchors: set[str] = set()
    seen: dict[str, int] = {}
    in_fence = False
    for line in path.read_text().splitlines():
        if line.lstrip().startswith("```"):
            in_fence = not in_fence
            continue
        match = re.match(r"^#{1,6}\s+(.+?)\s*#*\s*$", line)
        if in_fence or not match:
            continue
        anchor = github_anchor(match.group(1))
        count = seen.get(anchor, 0)
        seen[anchor] = count + 1
        anchors.add(anchor if count == 0 else f"{anchor}-{count}")
    return anchors


def markdown_section(path: Path, heading: str) -> str:
    """The text under a level-2 heading, up to the next level-2 heading."""
    text = path.read_text()
    match = re.search(rf"^## {re.escape(heading)}\s*$(.*?)(?=^## |\Z)", text, re.M | re.S)
    return match.group(1) if match else ""


def tool(name: str) -> str:
    """Full path of a command-line tool; fails the test with the package to install if missing."""
    found = shutil.which(name)
    if not found:
        packages = {"promtool": "prometheus", "amtool": "prometheus-alertmanager"}
        raise AssertionError(f"{name} not found: apt-get install {packages.get(name, name)}")
    return found


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
