"""The gateway's Redis pub/sub connection (see :mod:`app.resp`).

Why not redis-py's ``PubSub``: its retry logic reconnects and resubscribes silently, so the
gateway would never learn that announcements were lost and would skip the Postgres backfill.
Here a lost connection is an exception the supervisor sees (see :mod:`app.realtime.hub`). The
database number of the URL is ignored: pub/sub spans every database.
"""

from __future__ import annotations

from app.resp import Refused, RespConnection, command

__all__ = ("PubSubConnection", "Refused")


class PubSubConnection(RespConnection):
    """One connection in subscriber mode: send SUBSCRIBE/UNSUBSCRIBE/PING, read replies."""

    def subscribe(self, *channels: str) -> None:
        if channels:
            self.write(command("SUBSCRIBE", *channels))

    def unsubscribe(self, *channels: str) -> None:
        if channels:
            self.write(command("UNSUBSCRIBE", *channels))

    def ping(self) -> None:
        self.write(command("PING"))
