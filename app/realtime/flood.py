"""A per-socket budget of client frames (token bucket): a client that floods the gateway with
frames is closed with 1008 (policy violation) instead of costing the process CPU for free.

1008 rather than 1013: 1013 tells a client to come back later and resume, which is right for a
full quota but would invite a misbehaving client to reconnect and flood again."""

from __future__ import annotations

import time


class FrameBudget:
    """``rate`` frames a second sustained, bursts up to ``2 * rate``."""

    __slots__ = ("_last", "_tokens", "burst", "rate")

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.burst = 2 * rate
        self._tokens = self.burst
        self._last = time.monotonic()

    def take(self) -> bool:
        """Spend one frame; False when the socket is over its budget."""
        now = time.monotonic()
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True
