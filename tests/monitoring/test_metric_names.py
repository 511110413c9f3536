"""metric_names: extraction from PromQL and expositions, and the names checked against the contract."""

from __future__ import annotations

import pytest

from . import metric_names, stack


def test_functions_keywords_labels_and_durations_are_not_names() -> None:
    """Only metric selectors count: functions, aggregations, grouping labels, label values,
    durations, offsets, numbers and Grafana variables do not."""
    expr = (
        "histogram_quantile(0.95, sum by (le, path) (rate(http_request_duration_seconds_bucket"
        '{job="draftwire-api", path="/api/autosave"}[$__rate_interval]))) > 0.5 '
        "unless on (queue) max without (instance) (queue_depth offset 1h) * 1e3 "
        "and time() - max(backup_last_success_timestamp_seconds) > 26 * 3600"
    )
    assert metric_names.promql_metric_names(expr) == {
        "http_request_duration_seconds",
        "queue_depth",
        "backup_last_success_timestamp_seconds",
    }


def test_histogram_suffixes_are_stripped() -> None:
    """_bucket, _sum and _count name the same histogram; _total stays (it is the counter's sample name)."""
    expr = "rate(a_seconds_sum[5m]) / rate(a_seconds_count[5m]) + rate(b_total[1m])"
    assert metric_names.promql_metric_names(expr) == {"a_seconds", "b_total"}


def test_recording_rules_and_synthetic_series_are_left_out() -> None:
    """Recorded series (job:...:ratio_rate1h) and Prometheus' own `up` are not app metrics."""
    assert metric_names.names_in(["job:http_requests_5xx:ratio_rate1h > 0.07 and up == 1"]) == set()


def test_exposition_names() -> None:
    """A /metrics body yields its base names: histogram parts folded, _created samples skipped."""
    text = (
        "# HELP jobs_processed_total Jobs\n# TYPE jobs_processed_total counter\n"
        'jobs_processed_total{queue="draft-build",status="done"} 3.0\n'
        "jobs_processed_created 1.7e9\n"
        'job_duration_seconds_bucket{queue="draft-build",le="0.5"} 1.0\n'
        "job_duration_seconds_count 1.0\nredis_up 1.0\n"
    )
    assert metric_names.exposition_metric_names(text) == {
        "jobs_processed_total",
        "job_duration_seconds",
        "redis_up",
    }


def test_rules_and_dashboards_use_metric_names() -> None:
    """Both sources contribute names; the rules' names are a subset of all used names."""
    rules, boards = metric_names.rule_metric_names(), metric_names.dashboard_metric_names()
    assert {"http_requests_total", "jobs_processed_total", "redis_up"} <= rules
    assert {"realtime_subscribers", "job_wait_seconds"} <= boards
    assert rules | boards == metric_names.used_metric_names()


@pytest.mark.skipif(
    not stack.CONTRACT.exists(), reason="shared/spec/CONTRACT.md is not beside the repository"
)
def test_every_used_metric_is_in_the_contract_or_a_named_extra() -> None:
    """Every metric a rule or panel reads is in the contract's metric list or in EXTRA_METRICS
    (the four the app exports for monitoring): a typo in a rule fails here, before any live run."""
    contract = metric_names.contract_metric_names(stack.CONTRACT.read_text())
    assert len(contract) > 20
    used = metric_names.used_metric_names()
    assert used - contract == set(metric_names.EXTRA_METRICS), (
        used - contract - set(metric_names.EXTRA_METRICS)
    )


@pytest.mark.skipif(
    not stack.CONTRACT.exists(), reason="shared/spec/CONTRACT.md is not beside the repository"
)
def test_every_contract_metric_is_on_a_dashboard() -> None:
    """Every metric the contract names is shown on some dashboard."""
    contract = {
        metric_names.base_name(n) for n in metric_names.contract_metric_names(stack.CONTRACT.read_text())
    }
    assert contract <= metric_names.dashboard_metric_names()
