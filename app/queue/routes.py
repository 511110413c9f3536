"""HTTP routes of the queue platform (jobs, builds, admin)."""

from __future__ import annotations

from typing import Any

ROUTES: list[Any] = []
