"""Who owns a channel: each feature that names things in channels answers for its own prefix.

``job:build:<uuid>`` is answered by the builds' job records, ``draft:<id>`` and
``job:draft:<userId>:<draftId>`` by the autosave store; a role registers the lookups of the
features it runs. The longest registered prefix wins. An unknown or malformed channel has no
owner, and the gateway gives "nobody" and "someone else" the same ``not_found``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from app.events.log import valid_channel

OwnerLookup = Callable[[str], Awaitable[str | None]]
"""Given the rest of the channel after the registered prefix, the owner's user id or None."""


class ChannelOwners:
    def __init__(self) -> None:
        self._lookups: dict[str, OwnerLookup] = {}

    def register(self, prefix: str, lookup: OwnerLookup) -> None:
        if prefix in self._lookups:
            raise ValueError(f"channel prefix {prefix!r} already has an owner lookup")
        self._lookups[prefix] = lookup

    @property
    def prefixes(self) -> tuple[str, ...]:
        return tuple(sorted(self._lookups, key=len, reverse=True))

    async def owner(self, channel: str) -> str | None:
        """The user id owning ``channel``, or None when unknown or malformed."""
        if not valid_channel(channel):
            return None
        for prefix in self.prefixes:
            if channel.startswith(prefix):
                return await self._lookups[prefix](channel[len(prefix) :])
        return None
