"""A bounded exit after SIGTERM (contract: a SIGTERMed process exits within 30 s).

The worker gives running jobs ``DRAFTWIRE_SHUTDOWN_GRACE``; every later step gets a fixed budget
(:func:`bounded`), and an :class:`ExitWatchdog` ends the process if anything still hangs, after
writing where it hung: a step that overran logs the stacks of the tasks still running, the
watchdog every thread's stack. An on-call engineer then reads the cause in the pod's last log
lines instead of seeing only a SIGKILL after ``terminationGracePeriodSeconds``.
"""

from __future__ import annotations

import asyncio
import faulthandler
import os
import sys
import threading
from collections import Counter
from collections.abc import Awaitable
from typing import Any

from observability.logging import get_logger

log = get_logger("app.shutdown")

STUCK_EXIT_CODE = 70
"""The exit code when the watchdog ended a shutdown that hung (EX_SOFTWARE)."""


def running_tasks(limit: int = 40) -> list[str]:
    """Where the unfinished tasks of the running loop wait, as ``name outer>…>inner (file:line)``
    with a count for repeats (code locations only, never arguments or values)."""
    current = asyncio.current_task()
    seen: Counter[str] = Counter()
    for task in asyncio.all_tasks():
        if task is current or task.done():
            continue
        frames = _await_chain(task.get_coro())
        if not frames:
            seen[f"{task.get_name()} ?"] += 1
            continue
        inner = frames[-1]
        where = f"{inner.f_code.co_filename.rsplit('/', 1)[-1]}:{inner.f_lineno}"
        name = task.get_name().rstrip("0123456789").rstrip("-")  # Task-306 and Task-307 alike
        chain = ">".join(f.f_code.co_name for f in frames[-6:])
        seen[f"{name} {chain} ({where})"] += 1
    return [f"{line} x{n}" if n > 1 else line for line, n in seen.most_common(limit)]


def _await_chain(coro: Any) -> list[Any]:
    """The frames of a suspended coroutine and of those it awaits, outermost first (a task's
    ``get_stack`` stops at the outermost)."""
    frames: list[Any] = []
    while coro is not None and len(frames) < 64:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
        if frame is None:
            break
        frames.append(frame)
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
    return frames


async def bounded(step: str, awaitable: Awaitable[Any], timeout: float) -> bool:  # noqa: ASYNC109 - the bound is the point
    """Await ``awaitable`` for at most ``timeout`` seconds; True when it finished. When it did
    not, log ``shutdown_step_overran`` with the step and where the remaining tasks wait, and go on."""
    try:
        async with asyncio.timeout(max(0.0, timeout)):
            await awaitable
        return True
    except TimeoutError:
        log.error("shutdown_step_overran", step=step, timeout_s=round(timeout, 1), tasks=running_tasks())
        return False


class ExitWatchdog:
    """Armed at SIGTERM: if the process has not exited ``after`` seconds later, log
    ``shutdown_overran``, dump every thread's stack to stderr and exit with
    :data:`STUCK_EXIT_CODE`. A thread, so a blocked event loop cannot stop it."""

    def __init__(self, after: float) -> None:
        self.after = after
        self._timer: threading.Timer | None = None

    def arm(self) -> None:
        self._timer = threading.Timer(self.after, self._fire)
        self._timer.daemon = True
        self._timer.name = "exit-watchdog"
        self._timer.start()

    def _fire(self) -> None:
        log.error("shutdown_overran", after_s=round(self.after, 1), exit_code=STUCK_EXIT_CODE,
                  hint="the stacks below (stderr) show where it hung")
        sys.stdout.flush()
        faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
        sys.stderr.flush()
        os._exit(STUCK_EXIT_CODE)


__all__ = ("STUCK_EXIT_CODE", "ExitWatchdog", "bounded", "running_tasks")
