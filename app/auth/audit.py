"""The audit line of an admin action: who (the admin's user id), what, on which target.

One ``admin_action`` log line per retry, purge and publish, so an operator can answer "who
emptied the failed queue" from the logs alone. Never the request body: event data may hold
personal data."""

from __future__ import annotations

from typing import Any

from app.auth.tokens import Principal
from observability.logging import get_logger

log = get_logger("app.audit")


def admin_action(admin: Principal, action: str, target: str, **facts: Any) -> None:
    """Log ``admin_action`` with ``admin_id``, ``action`` (e.g. ``queue.purge_failed``) and
    ``target`` (e.g. ``draft-build``); ``facts`` add counts or outcomes, never payloads."""
    log.info("admin_action", admin_id=admin.user_id, action=action, target=target, **facts)
