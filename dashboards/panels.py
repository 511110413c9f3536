"""Building blocks of Draftwire's Grafana dashboards: targets, panels with SLO lines, layout,
and the panels several dashboards share. Standard library only; see generate.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DATASOURCE = {"type": "prometheus", "uid": "prometheus"}
FAULT_ONLY = "[fault-only]"
API = 'job="draftwire-api"'
STREAMS = 'job=~"draftwire-api|draftwire-gateway"'
"""Whichever processes serve /ws and /api/events: gateway processes, or APIs that serve them."""
WORKER = 'job="draftwire-worker"'
RATE = "$__rate_interval"
SLO_BUDGET = 0.005
"""Error budget of the 99.5 % availability SLO."""

Panel = dict[str, Any]
UP_DOWN: dict[str, Any] = {"lines": ((1, "green"),), "base": "red"}
"""Stat colors for 0/1 gauges: red at 0, green at 1."""



# --- building blocks --------------------------------------------------------------------------
def target(expr: str, legend: str = "", *, exemplar: bool = False) -> dict[str, Any]:
    """One Prometheus query; refIds are assigned by ``panel``."""
    return {"datasource": DATASOURCE, "expr": expr, "legendFormat": legend, "exemplar": exemplar}


def thresholds(steps: tuple[tuple[float, str], ...], base: str) -> dict[str, Any]:
    """Absolute thresholds: ``base`` below the first step, then each (value, color)."""
    return {
        "mode": "absolute",
        "steps": [{"color": base, "value": None}] + [{"color": c, "value": v} for v, c in steps],
    }


def panel(
    title: str,
    targets: list[dict[str, Any]],
    *,
    unit: str = "short",
    kind: str = "timeseries",
    lines: tuple[tuple[float, str], ...] = (),
    base: str = "green",
    description: str = "",
    fault_only: bool = False,
    width: int = 12,
) -> Panel:
    """A panel. ``lines`` are (value, color) thresholds above ``base``: dashed lines on a time
    series (the SLO lines), the background color on a stat."""
    if fault_only:
        description = f"{description} {FAULT_ONLY} Shows data only while something is wrong.".strip()
    defaults: dict[str, Any] = {"unit": unit, "thresholds": thresholds(lines, base)}
    if kind == "timeseries":
        defaults["custom"] = {
            "drawStyle": "line",
            "lineWidth": 1,
            "fillOpacity": 10,
            "showPoints": "never",
            "thresholdsStyle": {"mode": "dashed" if lines else "off"},
        }
        options: dict[str, Any] = {
            "legend": {"displayMode": "table", "placement": "bottom", "calcs": ["lastNotNull", "max"]},
            "tooltip": {"mode": "multi", "sort": "desc"},
        }
    else:
        options = {
            "colorMode": "background",
            "graphMode": "area",
            "reduceOptions": {"calcs": ["lastNotNull"]},
        }
    return {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "targets": [dict(t, refId=chr(ord("A") + i)) for i, t in enumerate(targets)],
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": options,
        "_width": width,
    }


def quantile(q: float, metric: str, selector: str, by: str = "") -> str:
    """histogram_quantile over a rate of ``metric``_bucket, summed by le (and ``by``)."""
    labels = f"le, {by}" if by else "le"
    return f"histogram_quantile({q}, sum by ({labels}) (rate({metric}_bucket{{{selector}}}[{RATE}])))"


def latency(
    title: str,
    metric: str,
    selector: str,
    lines: tuple[tuple[float, str], ...],
    *,
    by: str = "",
    legend: str = "",
    description: str = "",
) -> Panel:
    """p50/p95/p99 of a histogram in seconds, with exemplars linking to Tempo traces."""
    return panel(
        title,
        [
            target(quantile(q, metric, selector, by), f"p{round(q * 100)} {legend}".strip(), exemplar=True)
            for q in (0.5, 0.95, 0.99)
        ],
        unit="s",
        lines=lines,
        description=description,
    )


def layout(panels: list[Panel]) -> list[Panel]:
    """Place panels left to right in rows of 24 columns, 8 high, and number them."""
    x = y = 0
    for number, p in enumerate(panels, start=1):
        width = p.pop("_width")
        if x + width > 24:
            x, y = 0, y + 8
        p["id"] = number
        p["gridPos"] = {"h": 8, "w": width, "x": x, "y": y}
        x += width
    return panels


def dashboard(uid: str, title: str, description: str, panels: list[Panel]) -> dict[str, Any]:
    """A whole dashboard, linked to the other Draftwire dashboards by tag."""
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["draftwire"],
        "timezone": "utc",
        "editable": False,
        "schemaVersion": 39,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-1h", "to": "now"},
        "templating": {"list": []},
        "annotations": {"list": []},
        "links": [{"type": "dashboards", "tags": ["draftwire"], "asDropdown": True, "title": "Draftwire"}],
        "panels": layout(panels),
    }


# --- panels used on more than one dashboard ---------------------------------------------------
AUTOSAVE_ROUTE = f'{API}, method="POST", path="/api/autosave"'
HTTP_SLI = f'{API}, path!~"/metrics|/healthz|/readyz|/health"'


def autosave_latency() -> Panel:
    return latency(
        "POST /api/autosave latency",
        "http_request_duration_seconds",
        AUTOSAVE_ROUTE,
        ((0.1, "yellow"), (0.5, "red")),
        description="Target 100 ms, SLO p95 < 500 ms (AutosaveLatencyHigh).",
    )


def flush_latency() -> Panel:
    return latency(
        "Autosave batch write latency",
        "autosave_flush_duration_seconds",
        WORKER,
        ((0.2, "red"),),
        description="One batch written to Postgres; SLO p95 < 200 ms (AutosaveFlushSlow).",
    )


def catchup_latency() -> Panel:
    return latency(
        "Catch-up replay latency",
        "realtime_catchup_duration_seconds",
        STREAMS,
        ((1.2, "orange"), (1.5, "red")),
        description="Subscribe to caught_up. Alert at 1200 ms, SLO p95 < 1500 ms.",
    )


def broadcast_latency() -> Panel:
    return latency(
        "Broadcast latency (publish to socket write)",
        "realtime_broadcast_latency_seconds",
        STREAMS,
        ((0.6, "red"),),
        description="SLO p95 < 600 ms (RealtimeBroadcastLatencyHigh).",
    )


def queue_waiting() -> Panel:
    return panel(
        "Jobs waiting per queue",
        [target('max by (queue) (queue_depth{state="waiting"})', "{{queue}}")],
        lines=((100, "red"),),
        description="QueueBacklogHigh fires above 100 for 5 m.",
    )


def connections() -> Panel:
    return panel(
        "Realtime connections per gateway (or API) process",
        [
            target(f"realtime_active_connections{{{STREAMS}}}", "{{instance}} active"),
            target(f"realtime_max_connections{{{STREAMS}}}", "{{instance}} quota"),
        ],
        lines=((400, "orange"), (500, "red")),
        description="Lines: 80 % of the default quota (400, RealtimeConnectionsNearQuota) and the quota "
        "REALTIME_MAX_CONNECTIONS=500; the quota series shows the configured value.",
    )


def error_budget_stats() -> list[Panel]:
    ratio30d = "job:http_requests_5xx:ratio_rate30d"
    return [
        panel(
            "Availability, last 30 days",
            [target(f"1 - {ratio30d}", "availability")],
            kind="stat",
            unit="percentunit",
            lines=((1 - SLO_BUDGET, "green"),),
            base="red",
            width=6,
            description="Requests without a 5xx (probes excluded). SLO 99.5 %.",
        ),
        panel(
            "Error budget remaining",
            [target(f"1 - {ratio30d} / {SLO_BUDGET}", "remaining")],
            kind="stat",
            unit="percentunit",
            lines=((0.25, "orange"), (0.5, "green")),
            base="red",
            width=6,
            description="Share of the 0.5 % monthly error budget not yet spent.",
        ),
    ]


def burn_rates() -> Panel:
    windows = ("5m", "30m", "1h", "2h", "6h", "1d", "3d")
    return panel(
        "Error budget burn rate",
        [target(f"job:http_requests_5xx:ratio_rate{w} / {SLO_BUDGET}", w) for w in windows],
        lines=((1, "yellow"), (3, "orange"), (6, "red"), (14.4, "purple")),
        description="1 = spending the budget exactly in 30 days. APIErrorBudgetBurn pages at 14.4x "
        "(1h/5m) and 6x (6h/30m), tickets at 3x (1d/2h) and 1x (3d/6h).",
    )


def error_ratio_by_route() -> Panel:
    errors = f'sum by (method, path) (rate(http_requests_total{{{API}, status_code=~"5.."}}[{RATE}]))'
    total = f"sum by (method, path) (rate(http_requests_total{{{API}}}[{RATE}]))"
    return panel(
        "5xx ratio per route",
        [target(f"({errors} or 0 * {total}) / {total}", "{{method}} {{path}}")],
        unit="percentunit",
        lines=((0.05, "red"),),
        description="APIHighErrorRate fires when all routes together pass 5 % for 5 m.",
    )
