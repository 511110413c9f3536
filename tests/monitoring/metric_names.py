"""Every metric name our alert rules and dashboards read, for comparison with what the app exports.

Names are base names: ``_bucket``, ``_sum`` and ``_count`` are stripped (a histogram is one
name), recording-rule outputs (``level:metric:ops``) and PromQL functions, aggregations and
keywords are left out, and so are series Prometheus makes itself (``up``). The live test scrapes
the running API and worker and checks ``used_metric_names() <= exposition_metric_names(text)``;
``test_metric_names.py`` checks the same set against the contract offline.

Extraction is lexical, not a PromQL parser: strings, label matchers, ranges and grouping lists are
removed, then every remaining identifier not followed by ``(`` is a metric name. That is exact for
the PromQL we write (no metric names inside strings, no ``__name__`` matchers).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from . import stack

HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")

EXTRA_METRICS = {
    "readyz_up": "API gauge, 1 when /readyz would answer 200 (APINotReady, Overview)",
    "backup_last_success_timestamp_seconds": "worker gauge, last good pg_dump, unix time (BackupTooOld)",
    "autosave_flush_failures_total": "worker counter of failed flush batches (AutosaveFlushFailing)",
    "realtime_max_connections": "API gauge, REALTIME_MAX_CONNECTIONS (RealtimeConnectionsNearQuota)",
}
"""Names the rules and dashboards use that the contract's metric list does not name."""

SYNTHETIC_METRICS = {"up"}
"""Series Prometheus writes for each target itself; no process exports them."""

KEYWORDS = {
    "and",
    "or",
    "unless",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "offset",
    "bool",
    "inf",
    "nan",
    "start",
    "end",
}

_STRINGS = re.compile(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGES = re.compile(r"\[[^\[\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_VARIABLES = re.compile(r"\$\{?\w+\}?")
_IDENTIFIER = re.compile(r"(?<![\w.$])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?")


def base_name(name: str) -> str:
    """A sample name as its metric's name: ``x_bucket``/``x_sum``/``x_count`` -> ``x``."""
    for suffix in HISTOGRAM_SUFFIXES:
        if name.endswith(suffix):
            return name.removesuffix(suffix)
    return name


def promql_metric_names(expr: str) -> set[str]:
    """Metric names one PromQL expression selects, as base names (recording rules included)."""
    text = _STRINGS.sub('""', expr)
    text = _MATCHERS.sub(" ", text)
    text = _RANGES.sub(" ", text)
    text = _GROUPING.sub(" ", text)
    text = _VARIABLES.sub(" ", text)
    names = set()
    for match in _IDENTIFIER.finditer(text):
        name, call = match.group(1), match.group(2)
        if call or name.lower() in KEYWORDS:
            continue
        names.add(base_name(name))
    return names


def names_in(expressions: Iterable[str]) -> set[str]:
    """Exported metric names used by some expressions: recording-rule outputs and synthetic series out."""
    recorded = stack.recorded_names()
    used: set[str] = set()
    for expr in expressions:
        used |= promql_metric_names(expr)
    return {n for n in used if n not in recorded and ":" not in n and n not in SYNTHETIC_METRICS}


def rule_metric_names() -> set[str]:
    """Exported metric names our alerting and recording rules read."""
    return names_in(stack.rule_expressions())


def dashboard_metric_names() -> set[str]:
    """Exported metric names our dashboard panels read."""
    return names_in(stack.dashboard_expressions())


def used_metric_names() -> set[str]:
    """Every exported metric name the rules and dashboards depend on."""
    return rule_metric_names() | dashboard_metric_names()


def exposition_metric_names(text: str) -> set[str]:
    """Base names of the samples in a Prometheus or OpenMetrics exposition (a ``/metrics`` body).

    ``_created`` samples (prometheus_client's counter and histogram start times) are skipped.
    """
    names = set()
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name = re.split(r"[{\s]", line, maxsplit=1)[0]
        if name.endswith("_created"):
            continue
        names.add(base_name(name))
    return names


def contract_metric_names(contract_text: str) -> set[str]:
    """Metric names listed in the contract's "Prometheus metrics" section (sample names as written)."""
    match = re.search(r"^## Prometheus metrics.*?$(.*?)(?=^## |\Z)", contract_text, re.M | re.S)
    if not match:
        return set()
    names = set()
    for token in re.findall(r"`([^`]+)`", match.group(1)):
        name = token.split("{", 1)[0].strip()
        if re.fullmatch(r"[a-z_][a-z0-9_]*", name) and "_" in name:
            names.add(name)
    return names
