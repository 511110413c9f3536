"""Who may follow a channel: admins any; a user only the channels of their own jobs and drafts.

Ownership is the knowledge of the features that name things in channels (registered in
:class:`app.events.ChannelOwners`); the gateway only asks. A channel that does not exist and
someone else's get the same answer.
"""

from __future__ import annotations

from app.auth import Principal
from app.events import ChannelOwners


async def may_follow(owners: ChannelOwners, principal: Principal, channel: str) -> bool:
    if principal.admin:
        return True
    return await owners.owner(channel) == principal.user_id
