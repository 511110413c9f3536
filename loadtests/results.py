"""Reading a scenario's Locust output back (its ``_stats.csv`` and the counts file) into the
figures the thresholds name."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PREFIX = "locust"
"""Locust's ``--csv`` prefix inside each scenario's directory."""


@dataclass
class Row:
    kind: str
    name: str
    requests: int
    failures: int
    p50: float | None
    p95: float | None
    p99: float | None
    maximum: float | None
    rate: float


@dataclass
class Outcome:
    rows: dict[tuple[str, str], Row] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def row(self, kind: str, name: str) -> Row | None:
        return self.rows.get((kind, name))

    def p95(self, kind: str, name: str) -> float | None:
        row = self.row(kind, name)
        return row.p95 if row and row.requests else None

    def count(self, kind: str, name: str) -> int:
        row = self.row(kind, name)
        return row.requests if row else 0

    def failures(self, kind: str, name: str) -> int:
        row = self.row(kind, name)
        return row.failures if row else 0

    @property
    def counts(self) -> dict[str, int]:
        return self.extra.get("counts", {})  # type: ignore[no-any-return]


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def read(directory: Path) -> Outcome:
    """The ``_stats.csv`` rows (Aggregated left out) and the result file of one scenario."""
    out = Outcome()
    stats = directory / f"{PREFIX}_stats.csv"
    if stats.exists():
        with stats.open() as f:
            for r in csv.DictReader(f):
                if r["Name"] == "Aggregated":
                    continue
                out.rows[(r["Type"], r["Name"])] = Row(
                    r["Type"], r["Name"], int(r["Request Count"]), int(r["Failure Count"]), _number(r["50%"]),
                    _number(r["95%"]), _number(r["99%"]), _number(r["Max Response Time"]),
                    _number(r["Requests/s"]) or 0.0,
                )
    result = directory / "result.json"
    if result.exists():
        out.extra = json.loads(result.read_text())
    return out


def _ratio(failures: int, total: int) -> float | None:
    return failures / total if total else None


def autosave(o: Outcome) -> dict[str, float | None]:
    posts = o.count("POST", "/api/autosave") + o.count("POST", "/api/autosave (abusive)")
    failed = o.failures("POST", "/api/autosave") + o.failures("POST", "/api/autosave (abusive)")
    p95 = o.p95("POST", "/api/autosave")
    return {"post_p95_ms": p95, "post_target_p95_ms": p95, "error_ratio": _ratio(failed, posts),
            "abusive_429s": o.count("CHECK", "autosave 429 (abusive)"),
            "persisted_p95_ms": o.p95("WS", "save-to-persisted"),
            "persisted_failures": o.failures("WS", "save-to-persisted") if o.count("WS", "save-to-persisted") else None}


def catchup(o: Outcome) -> dict[str, float | None]:
    name = next((n for k, n in o.rows if k == "WS" and n.startswith("catch-up")), "")
    return {"p95_ms": o.p95("WS", name), "failed_replays": o.failures("WS", name) if o.count("WS", name) else None}


def broadcast(o: Outcome) -> dict[str, float | None]:
    c = o.counts
    seen = "subscribers" in c
    publish = "/api/admin/channels/{channel}/events"
    return {"p95_ms": o.p95("WS", "broadcast delivery"),
            "drops": c.get("drops") if seen else None, "duplicates": c.get("duplicates") if seen else None,
            "gaps": c.get("gaps") if seen else None,
            "publish_error_ratio": _ratio(o.failures("POST", publish), o.count("POST", publish))}


def build(o: Outcome) -> dict[str, float | None]:
    name = "build -> build.completed"
    return {"failed_builds": o.failures("WS", name) + o.failures("POST", "/api/drafts/{draft_id}/build")
            if o.count("WS", name) else None, "p95_ms": o.p95("WS", name)}


FIGURES = {"autosave": autosave, "catchup": catchup, "broadcast": broadcast, "build": build}
"""Figures per scenario (capacity's come from its steps: see ``loadtests.generators``)."""

LATENCY_ROWS = {
    "autosave": [("POST", "/api/autosave"), ("WS", "save-to-persisted")],
    "catchup": [("WS", None)],
    "broadcast": [("WS", "broadcast delivery"), ("POST", "/api/admin/channels/{channel}/events")],
    "build": [("WS", "build -> build.completed")],
    "capacity": [("POST", "/api/autosave")],
}
"""The rows each scenario's chart draws (None: every row of that type)."""
