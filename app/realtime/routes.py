"""HTTP and WebSocket routes of the realtime gateway."""

from __future__ import annotations

from typing import Any

ROUTES: list[Any] = []
