"""``draftwire``: the one console script (``api``, ``worker``, ``migrate``, ``token``, ...)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Sequence

from app import config as config_module
from app.config import ConfigError, Settings, parse_duration
from observability import logging as obs_logging

Command = Callable[[argparse.Namespace, Settings], int]


def _api(args: argparse.Namespace, settings: Settings) -> int:
    from app.roles.servers import granian

    granian("app.roles.api:serve", settings)
    return 0


def _gateway(args: argparse.Namespace, settings: Settings) -> int:
    from app.roles.gateway import run

    run(settings)
    return 0


def _worker(args: argparse.Namespace, settings: Settings) -> int:
    import uvloop

    from app.roles.worker import run

    uvloop.run(run(settings))
    return 0


def _migrate(args: argparse.Namespace, settings: Settings) -> int:
    from app.db.migrate import migrate

    applied = asyncio.run(migrate(settings.database_url))
    print(f"migrations: {len(applied)} applied" + (f" ({', '.join(applied)})" if applied else ", schema up to date"))
    return 0


def _token(args: argparse.Namespace, settings: Settings) -> int:
    from app.auth import issue

    print(issue(settings.jwt_secret, args.user, admin=args.admin, ttl_seconds=parse_duration(args.ttl)))
    return 0


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="draftwire", description=__doc__)
    sub = root.add_subparsers(dest="command", required=True)
    sub.add_parser("api", help="serve the HTTP API, WebSocket and SSE on PORT (Granian)").set_defaults(run=_api)
    gateway_help = "serve only /ws and /api/events (+ health, metrics) on PORT (GATEWAY_SERVER)"
    sub.add_parser("gateway", help=gateway_help).set_defaults(run=_gateway)
    worker_help = "run queue consumers and cron; /healthz /metrics on WORKER_METRICS_PORT"
    sub.add_parser("worker", help=worker_help).set_defaults(
        run=_worker
    )
    sub.add_parser("migrate", help="apply app/db/migrations/*.sql in order").set_defaults(run=_migrate)
    token = sub.add_parser("token", help="print a signed session token")
    token.add_argument("--user", required=True, help="user id (the token's sub)")
    token.add_argument("--admin", action="store_true", help="grant the admin role")
    token.add_argument("--ttl", default="1h", help="lifetime, e.g. 1h, 30m (default 1h)")
    token.set_defaults(run=_token)
    loadtest = sub.add_parser(
        "loadtest", help="the Locust load-test suite (from a source checkout): draftwire loadtest suite --help"
    )
    loadtest.add_argument("action", choices=["suite"], help="suite: run a config's scenarios and gate on the SLOs")
    loadtest.add_argument("args", nargs=argparse.REMAINDER, help="the suite's own options")
    loadtest.set_defaults(run=_loadtest, needs_settings=False)
    for extend in _extensions():
        extend(sub)
    return root


def _loadtest(args: argparse.Namespace, settings: Settings | None) -> int:
    """Delegates to ``loadtests.suite`` of the checkout: the load tests are not shipped."""
    import importlib
    import os

    sys.path.insert(0, os.getcwd())  # the checkout's loadtests/ package, when run from its root
    try:
        suite = importlib.import_module("loadtests.suite")
    except ImportError as exc:
        print(f"draftwire loadtest needs a source checkout with the load extra: run it from the repository root "
              f"after `make deps` ({exc})", file=sys.stderr)
        return 2
    return int(suite.main(list(args.args)))


def _extensions() -> list[Callable[[argparse._SubParsersAction], None]]:  # type: ignore[type-arg]
    from app.maintenance.cli import register as maintenance_commands
    from app.queue.cli import register as queue_commands

    return [queue_commands, maintenance_commands]


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if not getattr(args, "needs_settings", True):
        return int(args.run(args, None))
    try:
        settings = config_module.load()
    except ConfigError as exc:
        obs_logging.configure()
        obs_logging.get_logger("app.cli").error("startup_failed", variable=exc.variable, error=str(exc))
        return 2
    obs_logging.configure(settings.log_level, settings.log_format)
    try:
        return int(args.run(args, settings))
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # one clear line, not a traceback, for what an operator can fix
        obs_logging.get_logger("app.cli").error(
            "startup_failed", command=args.command, error=f"{type(exc).__name__}: {exc}"
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
