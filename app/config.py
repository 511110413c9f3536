"""Settings, read once from the environment into a typed, frozen dataclass.

Every variable of the contract has a field here with its unit and default. A bad value raises
:class:`ConfigError` naming the variable; the CLI turns that into one ``startup_failed`` line.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

__all__ = ("ConfigError", "Settings", "parse_duration")

DEV_JWT_SECRET = "dev-only-insecure-secret-change-me"  # noqa: S105 - refused outside dev, see load()

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names the variable."""

    def __init__(self, variable: str, problem: str) -> None:
        super().__init__(f"{variable}: {problem}")
        self.variable = variable


def parse_duration(text: str) -> float:
    """Parse ``15s``, ``500ms``, ``5m``, ``1h`` or a bare number of seconds into seconds."""
    match = _DURATION.match(text)
    if not match:
        raise ValueError(f"expected a duration like 15s, 500ms or 5m, got {text!r}")
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Everything the API, the worker and the CLI read from the environment."""

    env: str = "production"
    """``production`` unless ``DRAFTWIRE_ENV`` says otherwise: a process started without it refuses to
    run without a ``JWT_SECRET`` of at least 32 bytes. Only ``dev`` (asked for explicitly by
    ``make up``, the demo and the tests) accepts the built-in development secret."""
    database_url: str = "postgresql://postgres@127.0.0.1:5432/draftwire"
    """Role that owns the schema and runs migrations; request work runs as ``draftwire_app``."""
    redis_url: str = "redis://127.0.0.1:6379/0"
    """Redis for the queue, autosave buffer, rate limits and realtime announcements."""
    jwt_secret: str = field(default=DEV_JWT_SECRET, repr=False)
    """HS256 key that signs and verifies session tokens, at least 32 bytes. Never logged (``repr=False``)."""
    jwt_secret_previous: str | None = field(default=None, repr=False)
    """``JWT_SECRET_PREVIOUS``: the key being rotated out. It only verifies (never signs) tokens
    issued before the rotation, for a grace period as long as the longest session (``draftwire
    token --ttl``, 1 h by default); then restart without it. None (unset or empty): only
    ``JWT_SECRET`` verifies, which is also how every old session is cut at once after a leak
    (docs/runbooks/security.md). At least 32 bytes; refused when equal to ``JWT_SECRET`` or the
    development secret. Never logged."""
    cors_allowed_origins: tuple[str, ...] = ()
    """``CORS_ALLOWED_ORIGINS`` (comma list of ``scheme://host[:port]``): browser origins allowed to
    call the HTTP API cross-site. Empty (the default): CORS is off, no ``Access-Control-*`` header
    is ever sent and browsers keep other sites out. ``*`` is refused: sessions ride on cookies."""
    port: int = 8080
    """API listen port."""
    host: str = "0.0.0.0"  # noqa: S104 - a service listens on all interfaces inside its container
    """API listen address."""
    worker_metrics_port: int = 9091
    """Worker ``/healthz`` and ``/metrics`` port."""
    api_request_timeout: float = 15.0
    """Seconds before a request is answered 503; 0 disables."""
    db_query_timeout: float = 5.0
    """Postgres ``statement_timeout`` in seconds for every request and job statement."""
    worker_task_timeout: float = 15.0
    """Seconds a job may run before it is cancelled and retried."""
    job_max_attempts: int = 5
    """Attempts (first run included) before a job is kept as failed."""
    worker_concurrency: int = 10
    """Jobs one worker process runs at once."""
    worker_nice: int = 19
    """CPU priority the worker gives up (``nice``, 0-19) so that, on a host it shares with an
    API process, requests are served first: the worker's budget is the flush window (1 s), the
    API's a few milliseconds. 19, the usual niceness of background batch work: with the shared
    driver at 300 saves/s it took the API's p99 from 60-154 ms (at 10) to 18-22 ms, save-to-row
    unchanged, and up to 850 saves/s flushes kept up (docs/BENCHMARKS.md). The price: on a host
    saturated for long, flushes (and their 6 s job heartbeats) wait for idle CPU; if
    ``AutosaveFlushSlow`` fires there, give the worker a share (10) or a host of its own. 0 keeps
    the default priority."""
    autosave_rate_limit_per_minute: int = 30
    """Accepted saves per user per minute, shared across API processes."""
    autosave_max_title_chars: int = 200
    """Longest title, counted in characters (not bytes)."""
    autosave_max_payload_bytes: int = 512_000
    """Largest serialized payload in bytes (UTF-8 JSON)."""
    autosave_flush_delay: float = 1.0
    """Coalescing window in seconds between the first unsaved change and its write."""
    autosave_batch_size: int = 25
    """Drafts written per Postgres round trip."""
    rate_limit_requests: int = 200
    """Requests per client per window on all other API routes."""
    rate_limit_window_seconds: int = 60
    """Window of ``rate_limit_requests``, in seconds."""
    realtime_max_connections: int = 500
    """Open sockets per API process before new ones are closed with 1013."""
    realtime_max_per_client: int = 10
    """Open sockets per client (user) before new ones are closed with 1013."""
    realtime_max_subscriptions: int = 5
    """Channels one socket may follow at once."""
    realtime_idle_timeout: float = 300.0
    """Seconds without a client frame before a socket is closed."""
    realtime_allowed_origins: tuple[str, ...] = ()
    """Origins allowed to open ``/ws``; empty means the request's own host only."""
    realtime_client_frames_per_second: int = 20
    """Sustained client frames per second one socket may send (bursts up to twice that); a socket
    over it is closed with 1008 (policy violation, ``too many frames``). Real clients send a few
    subscribe/unsubscribe/ping frames a minute."""
    realtime_catchup_page: int = 500
    """Events read from Postgres per replay page."""
    realtime_max_connection_age: float = 3600.0
    """Seconds a socket (or SSE stream) may stay open before it is closed with 1001 so that its
    client reconnects, resuming by seq, possibly to a newer gateway process: after a scale-out the
    old processes shed their sockets over this window instead of keeping them for days. Each
    stream draws its own age uniformly from 80-100 % of this (jitter), so a process's sockets do
    not all reconnect at once. 0 turns it off."""
    realtime_compression: bool = False
    """Per-message deflate on ``/ws`` (``REALTIME_COMPRESSION=1``), under uvicorn only (Granian has
    none). Off: it costs about 35 KiB of zlib state a socket and CPU for every frame sent to every
    socket, for events that are a few hundred bytes (docs/decisions/0004-gateway-server.md)."""
    gateway_server: str = "uvicorn"
    """The server ``draftwire gateway`` runs under: ``uvicorn`` (with ``websockets-sansio``, the
    default), ``uvicorn-wsproto`` or ``granian`` (docs/decisions/0004-gateway-server.md).
    ``draftwire api`` always runs under Granian."""
    event_retention_days: int = 30
    """Days ``channel_events`` are kept by the maintenance job."""
    backup_dir: str = ".data/backups"
    """Where ``draftwire backup`` and the nightly job write ``pg_dump`` files."""
    backup_retention_days: int = 7
    """Days of nightly dumps kept."""
    shutdown_grace: float = 25.0
    """Seconds running jobs get after SIGTERM before they are cancelled and put back on their
    queue (kept under the 30 s exit budget). ``DRAFTWIRE_SHUTDOWN_GRACE``; tests shorten it."""
    maintenance_cron: str = "0 2 * * *"
    """When the retention job runs (cron syntax, UTC; a sixth field is seconds).
    ``DRAFTWIRE_MAINTENANCE_CRON``; operators normally leave it, tests shorten it."""
    backup_cron: str = "0 2 * * *"
    """When the nightly ``pg_dump`` runs. ``DRAFTWIRE_BACKUP_CRON``."""
    test_jobs: bool = False
    """``DRAFTWIRE_TEST_JOBS=1`` registers test-only job functions (failing, sleeping, no-op) on
    ``draft-build``, for the test suite and the queue benchmark. Refused in production."""
    log_level: str = "INFO"
    """Standard level name."""
    log_format: str = "json"
    """``json`` (one object a line) or ``console`` (for people)."""

    @property
    def is_dev(self) -> bool:
        return self.env == "dev"

    @property
    def jwt_verify_keys(self) -> tuple[str, ...]:
        """Keys that verify session tokens, the signing key first."""
        if self.jwt_secret_previous:
            return (self.jwt_secret, self.jwt_secret_previous)
        return (self.jwt_secret,)


# env var -> (field, parser). Durations accept 15s/500ms/5m; ints must be whole and >= 0.
def _int(text: str) -> int:
    try:
        value = int(text.strip())
    except ValueError:
        raise ValueError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise ValueError("must not be negative")
    return value


def _positive_int(text: str) -> int:
    value = _int(text)
    if value == 0:
        raise ValueError("must be at least 1")
    return value


def _nice(text: str) -> int:
    value = _int(text)
    if value > 19:
        raise ValueError("must be between 0 and 19")
    return value


def _origins(text: str) -> tuple[str, ...]:
    return tuple(o.strip().rstrip("/") for o in text.split(",") if o.strip())


def _cors_origins(text: str) -> tuple[str, ...]:
    origins = _origins(text)
    for origin in origins:
        if origin == "*" or not re.fullmatch(r"https?://[A-Za-z0-9.-]+(:\d{1,5})?", origin):
            raise ValueError(f"expected origins like https://app.example.com, got {origin!r} ('*' is refused)")
    return origins


def _choice(*allowed: str) -> Any:
    def parse(text: str) -> str:
        value = text.strip().lower()
        if value not in allowed:
            raise ValueError(f"expected one of {', '.join(allowed)}")
        return value

    return parse


def _level(text: str) -> str:
    value = text.strip().upper()
    if value not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
        raise ValueError("expected DEBUG, INFO, WARNING, ERROR or CRITICAL")
    return value


def _cron(text: str) -> str:
    from croniter import croniter

    value = text.strip()
    if not croniter.is_valid(value):
        raise ValueError(f"expected a cron expression like '0 2 * * *', got {text!r}")
    return value


def _flag(text: str) -> bool:
    value = text.strip().lower()
    if value not in {"0", "1", "true", "false"}:
        raise ValueError("expected 1 or 0")
    return value in {"1", "true"}


def _url(*schemes: str) -> Any:
    def parse(text: str) -> str:
        value = text.strip()
        if not value.startswith(tuple(f"{s}://" for s in schemes)):
            raise ValueError(f"expected a URL starting with {' or '.join(s + '://' for s in schemes)}")
        return value

    return parse


_PARSERS: dict[str, tuple[str, Any]] = {
    "DRAFTWIRE_ENV": ("env", _choice("dev", "test", "prod", "production", "staging")),
    "DATABASE_URL": ("database_url", _url("postgresql", "postgres")),
    "REDIS_URL": ("redis_url", _url("redis", "rediss", "unix")),
    "JWT_SECRET": ("jwt_secret", str),
    "JWT_SECRET_PREVIOUS": ("jwt_secret_previous", str),
    "CORS_ALLOWED_ORIGINS": ("cors_allowed_origins", _cors_origins),
    "PORT": ("port", _positive_int),
    "HOST": ("host", str),
    "WORKER_METRICS_PORT": ("worker_metrics_port", _positive_int),
    "API_REQUEST_TIMEOUT": ("api_request_timeout", parse_duration),
    "DB_QUERY_TIMEOUT": ("db_query_timeout", parse_duration),
    "WORKER_TASK_TIMEOUT": ("worker_task_timeout", parse_duration),
    "JOB_MAX_ATTEMPTS": ("job_max_attempts", _positive_int),
    "WORKER_CONCURRENCY": ("worker_concurrency", _positive_int),
    "WORKER_NICE": ("worker_nice", _nice),
    "AUTOSAVE_RATE_LIMIT_PER_MINUTE": ("autosave_rate_limit_per_minute", _positive_int),
    "AUTOSAVE_MAX_TITLE_CHARS": ("autosave_max_title_chars", _positive_int),
    "AUTOSAVE_MAX_PAYLOAD_BYTES": ("autosave_max_payload_bytes", _positive_int),
    "AUTOSAVE_FLUSH_DELAY": ("autosave_flush_delay", parse_duration),
    "AUTOSAVE_BATCH_SIZE": ("autosave_batch_size", _positive_int),
    "RATE_LIMIT_REQUESTS": ("rate_limit_requests", _positive_int),
    "RATE_LIMIT_WINDOW_SECONDS": ("rate_limit_window_seconds", _positive_int),
    "REALTIME_MAX_CONNECTIONS": ("realtime_max_connections", _positive_int),
    "REALTIME_MAX_PER_CLIENT": ("realtime_max_per_client", _positive_int),
    "REALTIME_MAX_SUBSCRIPTIONS": ("realtime_max_subscriptions", _positive_int),
    "REALTIME_IDLE_TIMEOUT": ("realtime_idle_timeout", parse_duration),
    "REALTIME_ALLOWED_ORIGINS": ("realtime_allowed_origins", _origins),
    "REALTIME_CLIENT_FRAMES_PER_SECOND": ("realtime_client_frames_per_second", _positive_int),
    "REALTIME_CATCHUP_PAGE": ("realtime_catchup_page", _positive_int),
    "REALTIME_MAX_CONNECTION_AGE": ("realtime_max_connection_age", parse_duration),
    "REALTIME_COMPRESSION": ("realtime_compression", _flag),
    "GATEWAY_SERVER": ("gateway_server", _choice("uvicorn", "uvicorn-wsproto", "granian")),
    "EVENT_RETENTION_DAYS": ("event_retention_days", _positive_int),
    "BACKUP_DIR": ("backup_dir", str),
    "BACKUP_RETENTION_DAYS": ("backup_retention_days", _positive_int),
    "DRAFTWIRE_SHUTDOWN_GRACE": ("shutdown_grace", parse_duration),
    "DRAFTWIRE_MAINTENANCE_CRON": ("maintenance_cron", _cron),
    "DRAFTWIRE_BACKUP_CRON": ("backup_cron", _cron),
    "DRAFTWIRE_TEST_JOBS": ("test_jobs", _flag),
    "LOG_LEVEL": ("log_level", _level),
    "LOG_FORMAT": ("log_format", _choice("json", "console")),
}


def load(environ: Mapping[str, str] | None = None) -> Settings:
    """Build :class:`Settings` from ``environ`` (default ``os.environ``); raise ConfigError on a bad value."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for variable, (name, parse) in _PARSERS.items():
        raw = environ.get(variable)
        if raw is None or raw == "":
            continue
        try:
            values[name] = parse(raw)
        except ValueError as exc:
            raise ConfigError(variable, str(exc)) from None
    settings = Settings(**values)
    if not settings.is_dev and settings.jwt_secret == DEV_JWT_SECRET:
        given = "JWT_SECRET" in environ and environ["JWT_SECRET"] != ""
        problem = "the built-in development secret is refused" if given else "required"
        raise ConfigError(
            "JWT_SECRET",
            f"{problem} when DRAFTWIRE_ENV={settings.env}: set a random secret of at least 32 bytes"
            " (openssl rand -hex 32), or DRAFTWIRE_ENV=dev for local development only",
        )
    if settings.test_jobs and settings.env in {"prod", "production"}:
        raise ConfigError("DRAFTWIRE_TEST_JOBS", "test-only job functions are refused in production")
    if len(settings.jwt_secret.encode()) < 32:  # RFC 7518 3.2: an HS256 key of at least 256 bits
        raise ConfigError("JWT_SECRET", "must be at least 32 bytes long")
    _check_previous_secret(settings)
    return settings


def _check_previous_secret(settings: Settings) -> None:
    previous = settings.jwt_secret_previous
    if previous is None:
        return
    if len(previous.encode()) < 32:
        raise ConfigError("JWT_SECRET_PREVIOUS", "must be at least 32 bytes long (it was a JWT_SECRET once)")
    if previous == settings.jwt_secret:
        raise ConfigError(
            "JWT_SECRET_PREVIOUS", "equals JWT_SECRET: set JWT_SECRET to the new secret and this one to the old"
        )
    if previous == DEV_JWT_SECRET:
        raise ConfigError("JWT_SECRET_PREVIOUS", "the built-in development secret is refused: anyone can sign with it")


assert {name for name, _ in _PARSERS.values()} <= {f.name for f in fields(Settings)}
