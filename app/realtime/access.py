"""Who may follow a channel: admins any; a user only the channels of their own jobs and drafts.

The queue owns job ownership and provides ``app.queue.ownership.channel_owner``; when it is
importable it answers for every channel. Until then drafts are resolved here (the Redis buffer,
else Postgres) and job channels are refused.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from app.auth.tokens import Principal
from app.autosave.store import DRAFT_PREFIX

if TYPE_CHECKING:
    from app.runtime import Runtime

OwnerResolver = Callable[[Any, str], Awaitable[str | None]]
_queue_resolver: OwnerResolver | None | bool = False  # False: not looked up yet


def _queue_channel_owner() -> OwnerResolver | None:
    global _queue_resolver
    if _queue_resolver is False:
        try:
            from app.queue.ownership import channel_owner  # type: ignore[import-not-found,unused-ignore]
        except ImportError:
            _queue_resolver = None
        else:
            _queue_resolver = channel_owner
    return _queue_resolver or None  # type: ignore[return-value]


async def channel_owner(runtime: Runtime, channel: str) -> str | None:
    """The user id owning ``channel``, or None when it does not exist (or is unknown here)."""
    resolver = _queue_channel_owner()
    if resolver is not None:
        return await resolver(runtime, channel)
    kind, _, ident = channel.partition(":")
    if kind != "draft":
        return None
    try:
        draft_id = str(uuid.UUID(ident))
    except ValueError:
        return None
    raw = await runtime.redis.hget(DRAFT_PREFIX + draft_id, "owner")
    if raw:
        return raw.decode() if isinstance(raw, bytes) else str(raw)
    async with runtime.db.tx("realtime.channel_owner") as conn:
        cur = await conn.execute("SELECT owner_user_id FROM draft_owner(%s)", (draft_id,))
        row = await cur.fetchone()
    return str(row["owner_user_id"]) if row else None


async def may_follow(runtime: Runtime, principal: Principal, channel: str) -> bool:
    if principal.admin:
        return True
    return await channel_owner(runtime, channel) == principal.user_id
