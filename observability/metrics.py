"""Every Prometheus instrument of the contract, in one place.

Labels stay bounded: route templates, queue names, fixed outcome words; never ids. Histograms carry
an exemplar with the current ``trace_id`` so a slow bucket links to its trace.
"""

from __future__ import annotations

from opentelemetry import trace
from prometheus_client import Counter, Gauge, Histogram

# Sub-second buckets for API/DB paths; the SLO lines (0.1, 0.2, 0.5 s) are bucket edges.
FAST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0)
# Jobs and catch-up run longer; 1.2 s and 1.5 s are the catch-up SLO lines.
SLOW_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.6, 1.0, 1.2, 1.5, 2.5, 5.0, 10.0, 15.0, 30.0, 60.0)


def exemplar() -> dict[str, str] | None:
    """The current span's trace id as an exemplar, or None outside a sampled span."""
    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid or not ctx.trace_flags.sampled:
        return None
    return {"trace_id": format(ctx.trace_id, "032x")}


def observe(histogram: Histogram, value: float) -> None:
    """Observe ``value`` with the current trace as exemplar."""
    histogram.observe(value, exemplar())


# --- shared by API and worker -------------------------------------------------------------------
DB_QUERY_DURATION = Histogram(
    "db_query_duration_seconds", "Postgres statement time by operation", ["operation"], buckets=FAST_BUCKETS
)
QUEUE_DEPTH = Gauge("queue_depth", "Jobs per queue and state", ["queue", "state"])
REDIS_UP = Gauge("redis_up", "1 when the last Redis ping answered")
DATABASE_UP = Gauge("database_up", "1 when the last Postgres ping answered")

# --- API -----------------------------------------------------------------------------------------
# The HTTP instruments keep the names and labels of Litestar's Prometheus plugin (prefix "http",
# group_path=True, app_name "draftwire"), which app/http/edge.py replaces on the hot path.
HTTP_LABELS = ["method", "path", "status_code", "app_name"]
HTTP_REQUESTS = Counter("http_requests_total", "Total requests", HTTP_LABELS)
HTTP_REQUEST_DURATION = Histogram(
    "http_request_duration_seconds", "Request duration, in seconds", HTTP_LABELS, buckets=FAST_BUCKETS
)
HTTP_REQUESTS_IN_PROGRESS = Gauge(
    "http_requests_in_progress", "Total requests currently in progress", HTTP_LABELS, multiprocess_mode="livesum"
)
HTTP_REQUEST_ERRORS = Counter("http_requests_error_total", "Total errors in requests", HTTP_LABELS)
READYZ_UP = Gauge("readyz_up", "1 when /readyz would answer 200")
RATE_LIMIT_EVENTS = Counter(
    "rate_limit_events_total", "Requests refused by a rate limit", ["scope", "endpoint"]
)
AUTOSAVE_REQUESTS = Counter("autosave_requests_total", "Autosave requests by outcome", ["outcome"])
AUTOSAVE_PAYLOAD_BYTES = Histogram(
    "autosave_payload_bytes",
    "Serialized payload size of accepted saves",
    buckets=(256, 1024, 4096, 16384, 65536, 131072, 262144, 524288, 1048576),
)
REALTIME_ACTIVE_CONNECTIONS = Gauge("realtime_active_connections", "Open WebSocket and SSE streams")
REALTIME_MAX_CONNECTIONS = Gauge("realtime_max_connections", "Configured REALTIME_MAX_CONNECTIONS")
REALTIME_SUBSCRIBERS = Gauge("realtime_subscribers", "Channel subscriptions across open streams")
REALTIME_CONNECTIONS_REJECTED = Counter(
    "realtime_connections_rejected_total", "Sockets refused or closed by a limit", ["reason"]
)
REALTIME_CATCHUP_DURATION = Histogram(
    "realtime_catchup_duration_seconds", "Subscribe to caught_up", buckets=SLOW_BUCKETS
)
REALTIME_CATCHUP_EVENTS = Histogram(
    "realtime_catchup_events", "Events replayed per catch-up", buckets=(0, 1, 10, 50, 120, 250, 500, 1000, 5000)
)
REALTIME_BROADCAST_LATENCY = Histogram(
    "realtime_broadcast_latency_seconds", "Event publish time to socket write", buckets=FAST_BUCKETS
)
REALTIME_SEQUENCE_GAPS = Counter("realtime_sequence_gaps_total", "Sequence gaps detected and backfilled")
REALTIME_REDIS_RECONNECTS = Counter("realtime_redis_reconnects_total", "Redis subscriber reconnects")

# --- worker --------------------------------------------------------------------------------------
JOBS_PROCESSED = Counter("jobs_processed_total", "Jobs finished, by queue and status", ["queue", "status"])
JOB_RETRIES = Counter("job_retries_total", "Job attempts that failed and were scheduled again", ["queue"])
JOB_DURATION = Histogram("job_duration_seconds", "Job run time", ["queue"], buckets=SLOW_BUCKETS)
JOB_WAIT = Histogram("job_wait_seconds", "Enqueue (or due time) to start", ["queue"], buckets=SLOW_BUCKETS)
AUTOSAVE_FLUSH_BATCH_SIZE = Histogram(
    "autosave_flush_batch_size", "Drafts written per batch", buckets=(1, 2, 5, 10, 15, 20, 25, 50, 100)
)
AUTOSAVE_FLUSH_DURATION = Histogram(
    "autosave_flush_duration_seconds", "One batch write to Postgres", buckets=FAST_BUCKETS
)
AUTOSAVE_FLUSH_FAILURES = Counter("autosave_flush_failures_total", "Batch writes that failed")
AUTOSAVE_DB_WRITES = Counter("autosave_db_writes_total", "Draft rows written to Postgres")
AUTOSAVE_SAVES_COALESCED = Counter(
    "autosave_saves_coalesced_total", "Accepted saves folded into a later write instead of written"
)
BACKUP_LAST_SUCCESS = Gauge("backup_last_success_timestamp_seconds", "Unix time of the last good pg_dump")
