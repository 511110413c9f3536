"""The suite's reports: ``summary.json``, a ``summary.md`` table (scenario, figure, threshold,
measured, verdict), a PNG per scenario of its percentiles over time against the SLO line, and
snapshots of the API's ``/metrics`` and ``/api/realtime/metrics`` around each scenario."""

from __future__ import annotations

import csv
import json
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt
from prometheus_client.parser import text_string_to_metric_families

from loadtests.gate import Figure
from loadtests.results import LATENCY_ROWS, PREFIX

WATCHED = {
    "http_5xx": ("http_requests_total", lambda labels: labels.get("status_code", "").startswith("5")),
    "rate_limited": ("rate_limit_events_total", lambda labels: True),
    "sequence_gaps": ("realtime_sequence_gaps_total", lambda labels: True),
    "connections_rejected": ("realtime_connections_rejected_total", lambda labels: True),
}
"""Counters whose change during a scenario the summary shows (sums over their labels)."""


def _fetch(url: str, token: str | None = None) -> str:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as r:  # noqa: S310
        return r.read().decode()  # type: ignore[no-any-return]


def snapshot(host: str, admin_token: str, directory: Path, when: str) -> dict[str, float]:
    """Save ``/metrics`` and ``/api/realtime/metrics`` as ``<when>-*`` files; the watched counters."""
    sums = dict.fromkeys(WATCHED, 0.0)
    try:
        text = _fetch(f"{host.rstrip('/')}/metrics")
        (directory / f"metrics-{when}.txt").write_text(text)
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                for key, (name, match) in WATCHED.items():
                    if sample.name == name and match(sample.labels):
                        sums[key] += sample.value
        (directory / f"realtime-{when}.json").write_text(_fetch(f"{host.rstrip('/')}/api/realtime/metrics", admin_token))
    except OSError as exc:
        (directory / f"snapshot-{when}-error.txt").write_text(f"{exc}\n")
    return sums


def chart(name: str, directory: Path, slo_lines: dict[str, float]) -> Path:
    """Percentiles over time of the scenario's latency rows, against its SLO lines."""
    history = directory / f"{PREFIX}_stats_history.csv"
    series: dict[str, dict[str, list[float]]] = {}
    first: float | None = None
    with history.open() as f:
        for row in csv.DictReader(f):
            wanted = any(row["Type"] == kind and (want is None or row["Name"] == want)
                         for kind, want in LATENCY_ROWS.get(name, []))
            if not wanted or row["95%"] in ("N/A", ""):
                continue
            t = float(row["Timestamp"])
            first = t if first is None else min(first, t)
            s = series.setdefault(f"{row['Type']} {row['Name']}", {"t": [], "50%": [], "95%": [], "99%": []})
            s["t"].append(t)
            for p in ("50%", "95%", "99%"):
                s[p].append(float(row[p]))
    fig, ax = plt.subplots(figsize=(9, 4.5))
    for label, s in series.items():
        xs = [t - (first or 0) for t in s["t"]]
        for p, style in (("50%", ":"), ("95%", "-"), ("99%", "--")):
            ax.plot(xs, s[p], style, label=f"{label} p{p[:-1]}")
    for label, value in slo_lines.items():
        ax.axhline(value, color="red", linewidth=1, label=label)
    ax.set_title(f"{name}: response-time percentiles (Locust's rolling window)")
    ax.set_xlabel("seconds since start")
    ax.set_ylabel("ms")
    ax.grid(alpha=0.3)
    if series or slo_lines:
        ax.legend(fontsize=7, loc="upper left")
    out = directory / f"{name}.png"
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def show(value: float | None) -> str:
    if value is None:
        return "no data"
    return f"{value:,.0f}" if float(value).is_integer() or abs(value) >= 100 else f"{value:,.3g}"


def write(output: Path, *, label: str, host: str, outcome: str, figures: list[Figure],
          scenarios: dict[str, dict[str, Any]]) -> None:
    """``summary.json`` and ``summary.md`` in ``output``."""
    now = datetime.now(UTC).isoformat(timespec="seconds")
    doc = {"label": label, "host": host, "finished_at": now, "outcome": outcome,
           "figures": [f.as_dict() for f in figures], "scenarios": scenarios}
    (output / "summary.json").write_text(json.dumps(doc, indent=2, default=str))
    lines = [f"# Load-test suite: {label}", "", f"{now}, against {host}: **{outcome}**", "",
             "| scenario | figure | threshold | measured | verdict |", "|---|---|---|---|---|"]
    for f in figures:
        note = f" ({f.note})" if f.note else ""
        lines.append(f"| {f.scenario} | {f.figure}: {f.slo} | {f.threshold} | {show(f.measured)} | {f.verdict.value}{note} |")
    lines += ["", "| scenario | seconds | generator CPU (peak mean %) | metrics change (5xx, 429, gaps, rejected) | artifacts |",
              "|---|---|---|---|---|"]
    for name, s in scenarios.items():
        d = s.get("metrics_delta", {})
        change = ", ".join(f"{k} {d.get(k, 0):+.0f}" for k in WATCHED)
        lines.append(f"| {name} | {s['seconds']:.1f} | {s['generator_cpu']:.0f} | {change} | {name}/ |")
    (output / "summary.md").write_text("\n".join(lines) + "\n")
