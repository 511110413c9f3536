"""What a feature contributes to a process role: routes and typed dependencies for the HTTP
roles, job functions, cron jobs and background services for the worker.

A feature builds its part from the platform pieces it uses; a role (``app.roles``) is a short
list of parts. Nothing here knows any feature.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol

from litestar import Litestar
from litestar.di import Provide

JobFunction = Callable[..., Awaitable[Any]]


class Service(Protocol):
    """A background service a worker runs beside its queues: ``start`` spawns its task."""

    def start(self) -> None: ...

    async def stop(self) -> None: ...


class LoopService:
    """A :class:`Service` whose work is one coroutine, ``main()``, run as a named task from
    ``start()`` until ``stop()`` cancels it."""

    task_name = "service"

    def __init__(self) -> None:
        self._task: asyncio.Task[None] | None = None

    async def main(self) -> None:
        raise NotImplementedError

    def start(self) -> None:
        self._task = asyncio.create_task(self.main(), name=self.task_name)

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


@dataclass
class HttpPart:
    """Routes, the dependencies their handlers declare, and lifespans of one feature."""

    routes: list[Any] = field(default_factory=list)
    dependencies: dict[str, Provide] = field(default_factory=dict)
    lifespans: list[Callable[[Litestar], AbstractAsyncContextManager[None]]] = field(default_factory=list)
    on_app: list[Callable[[Litestar], None]] = field(default_factory=list)
    """Called with the built app (e.g. to put a fast path in front of the middleware stack)."""
    health: dict[str, Callable[[bool], Awaitable[dict[str, Any]]]] = field(default_factory=dict)
    """Sections of ``GET /health`` (``{"autosave": ...}``)."""
    fast_paths: dict[tuple[str, str], Any] = field(default_factory=dict)
    """(method, path or template with one ``{param}``) -> a raw ASGI handler served in front of
    Litestar's stack, wrapped by the same edge layer as every route (only for the hottest
    routes, each also registered as a Litestar route; decision 0005)."""


@dataclass(frozen=True)
class Cron:
    name: str
    function: JobFunction
    schedule: str
    timeout_s: float | None = None
    """None: the worker's WORKER_TASK_TIMEOUT."""


@dataclass
class WorkerPart:
    """Job functions and cron jobs per queue, hooks and services of one feature."""

    functions: dict[str, dict[str, JobFunction]] = field(default_factory=dict)
    cron: dict[str, list[Cron]] = field(default_factory=dict)
    after_process: dict[str, Callable[[dict[str, Any]], Awaitable[None]]] = field(default_factory=dict)
    services: list[Service] = field(default_factory=list)
    on_start: list[Callable[[], None]] = field(default_factory=list)


def provide(value: Any) -> Provide:
    """A dependency that is one object for the app's life."""

    def dependency() -> Any:
        return value

    return Provide(dependency, use_cache=True, sync_to_thread=False)
