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
from typing import Any

from panels import (
    API,
    HERE,
    RATE,
    SLO_BUDGET,
    STREAMS,
    UP_DOWN,
    WORKER,
    autosave_latency,
    broadcast_latency,
    burn_rates,
    catchup_latency,
    connections,
    dashboard,
    error_budget_stats,
    error_ratio_by_route,
    flush_latency,
    latency,
    panel,
    quantile,
    queue_waiting,
    target,
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
