"""The channel event log: append an event with the next seq of its channel, announce it on Redis,
and read a channel's head and pages back for replay. Every feature writes to it; it imports no
feature. Who may follow a channel is asked of the stores that own the things channels name
(:class:`ChannelOwners`), never decided here."""

from app.events.log import (
    ANNOUNCE_PREFIX,
    EVENT_TYPE_RE,
    Announcement,
    Event,
    EventPublisher,
    decode_announcement,
    utc_iso_ms,
    valid_channel,
)
from app.events.owners import ChannelOwners, OwnerLookup
from app.events.reader import EventReader, StoredEvent

__all__ = (
    "ANNOUNCE_PREFIX",
    "EVENT_TYPE_RE",
    "Announcement",
    "ChannelOwners",
    "Event",
    "EventPublisher",
    "EventReader",
    "OwnerLookup",
    "StoredEvent",
    "decode_announcement",
    "utc_iso_ms",
    "valid_channel",
)
