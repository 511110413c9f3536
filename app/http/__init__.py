"""What every HTTP role wraps its routes in: the edge middleware (timeout, per-client rate
limit, access log) and the telemetry plugins (OpenTelemetry, Prometheus, structlog)."""
