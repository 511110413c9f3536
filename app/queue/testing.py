"""Test-only job functions, registered on the ``draft-build`` queue when the worker runs with
``DRAFTWIRE_TEST_JOBS=1`` (refused in production; the test suite sets it on the workers it
spawns). They let the tests drive failure, timeout and crash paths through a real worker:

- ``always_fail``: raises every time (a poisoned payload).
- ``fail_unless_allowed(gate)``: raises until Redis key ``dwtest:allow:<gate>`` exists.
- ``sleep_for(seconds, mark)``: sleeps, then (if ``mark``) adds the job key to ``dwtest:done:<mark>``.
- ``noop``: returns at once (the benchmark's job).
- ``stubborn(seconds)``: sleeps and ignores cancellation meanwhile (a handler stuck in work that
  cannot be interrupted), so a worker's shutdown hangs on it.
"""

from __future__ import annotations

import asyncio
from typing import Any

from redis.asyncio import Redis


class PoisonedJobError(RuntimeError):
    """What the failing test handlers raise."""


def test_functions(redis: Redis) -> dict[str, Any]:
    async def always_fail(ctx: dict[str, Any], **_: Any) -> None:
        raise PoisonedJobError("poisoned payload: this handler always fails")

    async def fail_unless_allowed(ctx: dict[str, Any], *, gate: str) -> str:
        if not await redis.exists(f"dwtest:allow:{gate}"):
            raise PoisonedJobError(f"gate {gate} is closed")
        return "ok"

    async def sleep_for(ctx: dict[str, Any], *, seconds: float, mark: str | None = None) -> str:
        await asyncio.sleep(seconds)
        if mark:
            await redis.sadd(f"dwtest:done:{mark}", ctx["job"].key)
        return "slept"

    async def noop(ctx: dict[str, Any], **_: Any) -> None:
        return None

    async def stubborn(ctx: dict[str, Any], *, seconds: float) -> str:
        loop = asyncio.get_running_loop()
        end = loop.time() + seconds
        while (left := end - loop.time()) > 0:
            try:
                await asyncio.sleep(left)
            except asyncio.CancelledError:
                continue  # the point: this handler does not let go
        return "done"

    return {f.__name__: f for f in (always_fail, fail_unless_allowed, sleep_for, noop, stubborn)}
