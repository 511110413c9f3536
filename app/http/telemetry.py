"""Logging wiring as Litestar's own structlog plugin: handlers get the same structured logger.

Request spans and request metrics are not plugins here: :mod:`app.http.edge` makes them in one
layer with the rest of the edge (decision 0005 has the measurement)."""

from __future__ import annotations

import structlog
from litestar.logging.config import StructLoggingConfig
from litestar.plugins.structlog import StructlogConfig, StructlogPlugin

from app.config import Settings
from observability import logging as obs_logging


def structlog_plugin(settings: Settings) -> StructlogPlugin:
    obs_logging.configure(settings.log_level, settings.log_format)
    # Our processors and handler are installed by observability.logging.configure; the plugin
    # gives handlers the same logger. Litestar's request logging is off: ours writes the
    # contract's `request` line (route, status, latency_ms) in app.http.edge.
    logging_config = StructLoggingConfig(
        processors=structlog.get_config()["processors"],
        logger_factory=structlog.get_config()["logger_factory"],
        wrapper_class=structlog.get_config()["wrapper_class"],
        log_exceptions="never",
        standard_lib_logging_config=None,
    )
    logging_config.standard_lib_logging_config = None
    return StructlogPlugin(StructlogConfig(structlog_logging_config=logging_config, enable_middleware_logging=False))
