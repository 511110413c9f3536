"""Generate Draftwire's Grafana dashboards (overview, autosave, queue, realtime, slo) as JSON.

Run ``python dashboards/generate.py`` after editing, and commit the JSON it writes beside
this file; ``--check`` exits 1 when the committed JSON differs from what this script makes.
Standard library only.

Every panel queries the Prometheus datasource with uid ``prometheus`` (provisioned in
``compose/grafana/provisioning``). SLO thresholds from the contract are drawn as lines. A panel
whose series exist only while something is wrong (failed jobs, gaps, rejections) says
``[fault-only]`` in its description, so the live dashboard test knows not to expect data from it
on a healthy system.
"""

from __future__ import annotations

import argparse
import json
import sys
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


# --- dashboards -------------------------------------------------------------------------------
def overview() -> dict[str, Any]:
    panels = [
        panel(
            "Requests per route",
            [
                target(
                    f"sum by (method, path) (rate(http_requests_total{{{API}}}[{RATE}]))",
                    "{{method}} {{path}}",
                )
            ],
            unit="reqps",
        ),
        error_ratio_by_route(),
        latency(
            "Latency per route (p95)",
            "http_request_duration_seconds",
            API,
            ((0.5, "red"),),
            by="method, path",
            legend="{{method}} {{path}}",
            description="Line: the autosave SLO (p95 < 500 ms).",
        ),
        panel(
            "Responses by status code",
            [target(f"sum by (status_code) (rate(http_requests_total{{{API}}}[{RATE}]))", "{{status_code}}")],
            unit="reqps",
        ),
        panel(
            "API readiness (/readyz)",
            [target(f"readyz_up{{{API}}}", "{{instance}}")],
            kind="stat",
            width=6,
            **UP_DOWN,
            description="1 = /readyz answers 200. APINotReady fires after 1 m at 0.",
        ),
        panel(
            "Redis reachable", [target("redis_up", "{{job}} {{instance}}")], kind="stat", width=6, **UP_DOWN
        ),
        panel(
            "Postgres reachable",
            [target("database_up", "{{job}} {{instance}}")],
            kind="stat",
            width=6,
            **UP_DOWN,
        ),
        panel(
            "Processes scraped",
            [target('up{job=~"draftwire-api|draftwire-gateway|draftwire-worker"}', "{{instance}}")],
            kind="stat",
            width=6,
            **UP_DOWN,
        ),
        *error_budget_stats(),
        burn_rates(),
    ]
    return dashboard(
        "draftwire-overview",
        "Draftwire / Overview",
        "RED per route, readiness of every process and the availability error budget.",
        panels,
    )


def autosave() -> dict[str, Any]:
    panels = [
        panel(
            "Autosave requests by outcome",
            [target(f"sum by (outcome) (rate(autosave_requests_total{{{API}}}[{RATE}]))", "{{outcome}}")],
            unit="reqps",
        ),
        autosave_latency(),
        panel(
            "Autosave payload size (p95)",
            [target(quantile(0.95, "autosave_payload_bytes", API), "p95")],
            unit="bytes",
            lines=((512000, "red"),),
            description="Line: AUTOSAVE_MAX_PAYLOAD_BYTES (413 above).",
        ),
        panel(
            "Rate-limited requests",
            [
                target(
                    f"sum by (scope, endpoint) (rate(rate_limit_events_total{{{API}}}[{RATE}]))",
                    "{{scope}} {{endpoint}}",
                )
            ],
            unit="reqps",
            fault_only=True,
            description="429s by limit. APIRateLimitSpike opens a ticket above 1/s for 10 m.",
        ),
        flush_latency(),
        panel(
            "Autosave batch size (p95)",
            [target(quantile(0.95, "autosave_flush_batch_size", WORKER), "p95")],
            lines=((25, "orange"),),
            description="Line: AUTOSAVE_BATCH_SIZE.",
        ),
        panel(
            "Postgres writes and coalesced saves",
            [
                target(f"sum(rate(autosave_db_writes_total{{{WORKER}}}[{RATE}]))", "rows written"),
                target(f"sum(rate(autosave_saves_coalesced_total{{{WORKER}}}[{RATE}]))", "saves coalesced"),
            ],
            unit="ops",
            description="Coalescing folds saves of one draft inside AUTOSAVE_FLUSH_DELAY into one write.",
        ),
        panel(
            "Batch write failure ratio",
            [
                target(
                    f"sum(rate(autosave_flush_failures_total{{{WORKER}}}[{RATE}])) / "
                    f"(sum(rate(autosave_flush_failures_total{{{WORKER}}}[{RATE}])) + "
                    f"sum(rate(autosave_flush_duration_seconds_count{{{WORKER}}}[{RATE}])))",
                    "failed",
                )
            ],
            unit="percentunit",
            lines=((0.01, "red"),),
            description="SLO: success > 99 % (AutosaveFlushFailing).",
        ),
        panel(
            "draft-autosave queue",
            [target('max by (state) (queue_depth{queue="draft-autosave"})', "{{state}}")],
        ),
        panel(
            "Postgres query latency (p95)",
            [
                target(
                    quantile(0.95, "db_query_duration_seconds", "", "job, operation"),
                    "{{job}} {{operation}}",
                    exemplar=True,
                )
            ],
            unit="s",
        ),
    ]
    return dashboard(
        "draftwire-autosave",
        "Draftwire / Autosave",
        "From POST /api/autosave through the Redis buffer to the batched Postgres write.",
        panels,
    )


def queue() -> dict[str, Any]:
    panels = [
        queue_waiting(),
        panel(
            "Jobs per queue and state", [target("max by (queue, state) (queue_depth)", "{{queue}} {{state}}")]
        ),
        panel(
            "Jobs finished per queue",
            [
                target(
                    f"sum by (queue, status) (rate(jobs_processed_total{{{WORKER}}}[{RATE}]))",
                    "{{queue}} {{status}}",
                )
            ],
            unit="ops",
            description="QueueWorkersStalled fires when waiting grows for 10 m while done stays 0.",
        ),
        panel(
            "Dead-lettered jobs (failed list)",
            [target('max by (queue) (queue_depth{state="failed"})', "{{queue}}")],
            description="Jobs out of attempts, kept until `draftwire queue retry` or `purge-failed`.",
        ),
        panel(
            "Permanent failures",
            [
                target(
                    f'sum by (queue) (increase(jobs_processed_total{{{WORKER}, status="failed"}}[{RATE}]))',
                    "{{queue}}",
                )
            ],
            fault_only=True,
            description="JobFailedPermanently fires on any increase.",
        ),
        panel(
            "Retries per queue",
            [target(f"sum by (queue) (rate(job_retries_total{{{WORKER}}}[{RATE}]))", "{{queue}}")],
            unit="ops",
            fault_only=True,
            description="JobRetryStorm: above 0.05/s and more than one retry per three finished jobs.",
        ),
        latency(
            "Job run time",
            "job_duration_seconds",
            WORKER,
            ((15, "red"),),
            by="queue",
            legend="{{queue}}",
            description="Line: WORKER_TASK_TIMEOUT (15 s); a job running longer is cancelled and retried.",
        ),
        latency(
            "Job wait (enqueue to start)", "job_wait_seconds", WORKER, (), by="queue", legend="{{queue}}"
        ),
        panel(
            "Workers scraped", [target(f"up{{{WORKER}}}", "{{instance}}")], kind="stat", width=6, **UP_DOWN
        ),
        panel(
            "Redis reachable from workers",
            [target(f"redis_up{{{WORKER}}}", "{{instance}}")],
            kind="stat",
            width=6,
            **UP_DOWN,
        ),
    ]
    return dashboard(
        "draftwire-queue",
        "Draftwire / Queue",
        "Queues draft-autosave, draft-build and maintenance: depth, throughput, retries, dead letters.",
        panels,
    )


def realtime() -> dict[str, Any]:
    panels = [
        connections(),
        panel("Subscriptions per gateway (or API) process",
              [target(f"realtime_subscribers{{{STREAMS}}}", "{{instance}}")]),
        catchup_latency(),
        panel(
            "Events replayed per catch-up (p95)",
            [target(quantile(0.95, "realtime_catchup_events", STREAMS), "p95")],
            description="The catch-up SLO is measured at 120 events.",
        ),
        broadcast_latency(),
        panel(
            "Rejected connections by reason",
            [
                target(
                    f"sum by (reason) (rate(realtime_connections_rejected_total{{{STREAMS}}}[{RATE}]))",
                    "{{reason}}",
                )
            ],
            unit="ops",
            fault_only=True,
            description="Quota (1013), origin/auth (1008), slow consumers.",
        ),
        panel(
            "Sequence gaps detected",
            [
                target(
                    f"sum by (instance) (increase(realtime_sequence_gaps_total{{{STREAMS}}}[{RATE}]))",
                    "{{instance}}",
                )
            ],
            fault_only=True,
            description="Zero drops: every gap is backfilled from Postgres; RealtimeSequenceGap.",
        ),
        panel(
            "Redis subscriber reconnects",
            [
                target(
                    f"sum by (instance) (increase(realtime_redis_reconnects_total{{{STREAMS}}}[{RATE}]))",
                    "{{instance}}",
                )
            ],
            fault_only=True,
            lines=((3, "red"),),
            description="RealtimeRedisReconnecting: more than 3 in 5 m.",
        ),
    ]
    return dashboard(
        "draftwire-realtime",
        "Draftwire / Realtime",
        "WebSocket/SSE gateway: connections against quota, catch-up and broadcast latency, drops.",
        panels,
    )


def slo() -> dict[str, Any]:
    panels = [
        *error_budget_stats(),
        panel(
            "5xx ratio (5 m) against the SLO",
            [target("job:http_requests_5xx:ratio_rate5m", "5xx ratio")],
            unit="percentunit",
            lines=((SLO_BUDGET, "orange"), (0.05, "red")),
            width=12,
            description="Lines: the 0.5 % error budget rate and the 5 % APIHighErrorRate threshold.",
        ),
        burn_rates(),
        autosave_latency(),
        flush_latency(),
        catchup_latency(),
        broadcast_latency(),
        queue_waiting(),
        connections(),
    ]
    return dashboard(
        "draftwire-slo",
        "Draftwire / SLOs",
        "Every SLO of the contract against its threshold line, and the availability error budget.",
        panels,
    )


DASHBOARDS = {"overview": overview, "autosave": autosave, "queue": queue, "realtime": realtime, "slo": slo}


def render(name: str) -> str:
    """The JSON text of one dashboard, as committed."""
    return json.dumps(DASHBOARDS[name](), indent=2, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if a committed JSON file is out of date")
    args = parser.parse_args(argv)
    stale = []
    for name in DASHBOARDS:
        path = HERE / f"{name}.json"
        text = render(name)
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(path.name)
        else:
            path.write_text(text)
    if stale:
        print(f"out of date, run python dashboards/generate.py: {', '.join(stale)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
