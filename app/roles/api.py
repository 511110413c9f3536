"""The ``api`` role: the HTTP API under Granian. By default it also serves the realtime streams
itself (dev, ``make up``, small installs); with a separate gateway role it need not."""

from __future__ import annotations

from litestar import Litestar

from app import autosave, builds, jobs, queue, realtime, web
from app import config as config_module
from app.config import Settings
from app.parts import HttpPart
from app.platform import Platform
from app.roles.http import build_app
from app.roles.services import services
from observability import tracing
from observability.metrics import REALTIME_MAX_CONNECTIONS

API_DB_POOL = 10
"""Postgres connections per API process, all opened at start-up (a fixed-size pool, as HikariCP
advises): a request never waits while the pool opens one. With the pool growing from 2, the
first second of the shared driver at 600 saves/s (every first save of a draft reads Postgres)
queued to a p95 of 221-281 ms over the whole run; fixed at 10, 33 ms (docs/BENCHMARKS.md)."""


def api_parts(platform: Platform) -> list[HttpPart]:
    """What the API serves: a short list of the features' parts (registering the channel owners
    of the things they name)."""
    shared = services(platform)
    drafts, job_store = shared.drafts, shared.jobs
    return [
        autosave.http_part(drafts),
        builds.http_part(platform, job_store, read_draft=drafts.get),
        jobs.http_part(job_store),
        queue.http_part(platform.queues),
        realtime.publish_part(platform),
        realtime.gateway_part(platform),
        web.http_part(platform.settings),
    ]


def create_app(settings: Settings | None = None, *, tune_process: bool = False) -> Litestar:
    settings = settings or config_module.load()
    tracing.configure("draftwire-api")
    REALTIME_MAX_CONNECTIONS.set(settings.realtime_max_connections)
    platform = Platform.create(settings, pool_min=API_DB_POOL, pool_max=API_DB_POOL)
    return build_app(platform, api_parts(platform), tune_process=tune_process)


def serve() -> Litestar:
    """Granian's factory for ``draftwire api``: the app, with this process tuned for serving."""
    return create_app(tune_process=True)
