"""The gate: thresholds from ``loadtests/thresholds.yaml`` (the contract's SLO table), merged with
a config's overrides, turned into one verdict per figure and the suite's exit code."""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass
from enum import Enum
from pathlib import Path
from typing import Any

import yaml

THRESHOLDS = Path(__file__).with_name("thresholds.yaml")


class Verdict(str, Enum):
    PASS = "pass"  # noqa: S105 - a verdict, not a password
    FAIL = "fail"
    INFO = "reported"
    INCONCLUSIVE = "inconclusive (generator saturated)"
    DISTURBED = "inconclusive (host disturbed)"


EXIT_CODES = {"pass": 0, "fail": 1, "inconclusive": 2}
"""0 only when every threshold held; 1 when one broke; 2 when none broke but a scenario's
generator saturated, or a timing figure missed while its host was disturbed (nothing to conclude)."""


def timing(figure: str) -> bool:
    """Whether a stolen CPU can explain a miss: latencies (``*_ms``) and the capacity's rate.
    Counts (drops, duplicates, failures, error ratios) stand whatever the host did."""
    return figure.endswith("_ms") or figure == "last_held_rate"


@dataclass
class Figure:
    scenario: str
    figure: str
    threshold: str
    measured: float | None
    verdict: Verdict
    slo: str = ""
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["verdict"] = self.verdict.value
        return out


def load_thresholds(overrides: dict[str, Any] | None = None, path: Path = THRESHOLDS) -> dict[str, Any]:
    """The thresholds file with ``overrides`` merged in, one level per scenario and figure."""
    merged: dict[str, Any] = yaml.safe_load(path.read_text())
    for scenario, figures in (overrides or {}).items():
        section = merged.setdefault(scenario, {})
        for name, value in figures.items():
            if isinstance(value, dict) and isinstance(section.get(name), dict):
                section[name] = {**section[name], **value}
            else:
                section[name] = copy.deepcopy(value)
    for name, value in (merged.get("generator") or {}).items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"thresholds: generator.{name} must be a number, got {value!r} "
                             f"(see loadtests/thresholds.yaml)")
    return merged


def _describe(rule: dict[str, Any]) -> str:
    if "max" in rule:
        return f"<= {rule['max']}"
    if "min" in rule:
        return f">= {rule['min']}"
    return "-"


def judge(scenario: str, measured: dict[str, float | None], rules: dict[str, Any], *,
          saturated: str | None = None, disturbed: str | None = None,
          notes: dict[str, str] | None = None) -> list[Figure]:
    """One figure per rule of ``scenario`` that is a figure (has a ``slo``). ``saturated``: why the
    generator could not be trusted (every bounded figure is then inconclusive, whatever it
    measured). ``disturbed``: why the host could not be (a :func:`timing` figure that missed is
    then inconclusive; one that held under it still passes)."""
    figures = []
    for name, rule in rules.items():
        if not isinstance(rule, dict) or "slo" not in rule:
            continue
        value, note = measured.get(name), (notes or {}).get(name, "")
        bounded = "max" in rule or "min" in rule
        if not bounded:
            verdict = Verdict.INFO
        elif saturated:
            verdict, note = Verdict.INCONCLUSIVE, _joined(note, saturated, disturbed)
        elif value is None:
            verdict, note = Verdict.FAIL, note or "no data: the scenario produced no sample for it"
        else:
            held = value <= rule["max"] if "max" in rule else value >= rule["min"]
            verdict = Verdict.PASS if held else Verdict.FAIL
            if not held and disturbed and timing(name):
                verdict, note = Verdict.DISTURBED, _joined(note, disturbed)
        figures.append(Figure(scenario, name, _describe(rule), value, verdict, rule["slo"], note))
    return figures


def _joined(*notes: str | None) -> str:
    return "; ".join(n for n in notes if n)


def outcome(figures: list[Figure]) -> str:
    """``pass``, ``fail`` or ``inconclusive`` for the whole run."""
    verdicts = {f.verdict for f in figures}
    if Verdict.FAIL in verdicts or not figures:
        return "fail"
    if verdicts & {Verdict.INCONCLUSIVE, Verdict.DISTURBED}:
        return "inconclusive"
    return "pass"
