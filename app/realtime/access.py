"""Who may follow a channel: admins any; a user only the channels of their own jobs and drafts.

Ownership is the queue's knowledge (``app.queue.ownership.channel_owner``: jobs and drafts); the
gateway only asks. A channel that does not exist and someone else's get the same answer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from app.auth.tokens import Principal
from app.queue.ownership import channel_owner

if TYPE_CHECKING:
    from app.runtime import Runtime


async def may_follow(runtime: Runtime, principal: Principal, channel: str) -> bool:
    if principal.admin:
        return True
    return await channel_owner(runtime, channel) == principal.user_id
