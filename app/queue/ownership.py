"""Who owns a realtime channel: the question the gateway asks before a user may subscribe.

``await channel_owner(runtime, "job:build:<uuid>")`` answers the user id, or None when the
channel names nothing we know (or is malformed). The gateway lets a user follow a channel only
when the answer is their id (admins follow anything); None and someone else's id both become
the same ``not_found``, so nobody learns what exists.

- ``job:build:<uuid>``: the ``jobs`` row's owner (``job_owner()``, any API process).
- ``job:draft:<userId>:<draftId>`` (an autosave flush job): that user, if the draft is theirs.
- ``draft:<draftId>``: the draft's owner, from Redis (``dw:draft:<id>`` field ``owner``, so a
  draft saved a moment ago counts) or else Postgres ``draft_owner(id)``.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from app.queue.jobs import BUILD_PREFIX, JobStore, autosave_owner
from app.realtime.events import valid_channel

if TYPE_CHECKING:
    from app.runtime import Runtime


async def channel_owner(runtime: Runtime, channel: str) -> str | None:
    """The user id owning ``channel``, or None when unknown or malformed."""
    if not valid_channel(channel):
        return None
    kind, _, rest = channel.partition(":")
    if kind == "draft":
        return await draft_owner(runtime, rest)
    if rest.startswith(BUILD_PREFIX):
        return await JobStore(runtime.db).owner(rest)
    user = autosave_owner(rest)
    if user is not None and await draft_owner(runtime, rest.rpartition(":")[2]) == user:
        return user
    return None


async def draft_owner(runtime: Runtime, draft_id: str) -> str | None:
    """The owner of a draft id, Redis first (unflushed drafts), then Postgres."""
    try:
        draft_id = str(uuid.UUID(draft_id))
    except ValueError:
        return None
    owner = await runtime.drafts.owner(draft_id)
    if owner is not None:
        return owner
    async with runtime.db.tx("drafts.owner") as conn:
        cur = await conn.execute("SELECT owner_user_id FROM draft_owner(%s)", (draft_id,))
        row = await cur.fetchone()
    return row["owner_user_id"] if row else None
