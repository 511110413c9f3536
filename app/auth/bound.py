"""A service bound to the caller: the one dependency a handler declares when it needs both.

Litestar resolves independent dependencies of a handler concurrently, in an anyio task group
per request; ``user`` plus a service would be two. A :class:`ForUser` provider depends on
``user`` (or ``admin``), so the two resolve in sequence with no task group (measured: the task
group was ~10 % of an autosave request's Python time; decision 0005).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

from litestar.di import Provide

from app.auth.guards import AdminUser, CurrentUser
from app.auth.tokens import Principal

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class ForUser(Generic[T]):
    """``service`` on behalf of ``user`` (an admin, for admin routes)."""

    service: T
    user: Principal

    @property
    def user_id(self) -> str:
        return self.user.user_id


@dataclass(frozen=True, slots=True)
class ForAdmin(ForUser[T]):
    """``service`` on behalf of an admin."""


def for_user(service: T) -> Provide:
    """A dependency: ``service`` bound to the ``user`` dependency (401 without a valid token)."""

    def bound(user: CurrentUser) -> ForUser[T]:
        return ForUser(service, user)

    return Provide(bound, sync_to_thread=False)


def for_admin(service: T) -> Provide:
    """A dependency: ``service`` bound to the ``admin`` dependency (401, or 403 without the role)."""

    def bound(admin: AdminUser) -> ForAdmin[T]:
        return ForAdmin(service, admin)

    return Provide(bound, sync_to_thread=False)


