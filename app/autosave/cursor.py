"""Page cursors of ``GET /api/drafts``: the keyset position after which the next page starts."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta

from app.errors import ApiError

CURSOR_PATTERN = r"^[0-9]{1,18}\.[0-9a-f]{32}$"
"""A page cursor: microseconds since the epoch and a draft id (hex), the keyset position after
which the next page starts. Every string of this shape is a valid position (so the OpenAPI
document can say exactly what is accepted); later than year 9999 counts as the newest."""
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MAX_MICROS = (datetime.max.replace(tzinfo=UTC) - _EPOCH) // timedelta(microseconds=1)


def encode_cursor(updated_at: datetime, draft_id: str) -> str:
    micros = (updated_at.astimezone(UTC) - _EPOCH) // timedelta(microseconds=1)
    return f"{micros}.{uuid.UUID(draft_id).hex}"


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    if not re.fullmatch(CURSOR_PATTERN, cursor):
        raise ApiError(400, "invalid_cursor", "cursor is not one this API returned; start again without it.")
    micros, draft_hex = cursor.split(".")
    return _EPOCH + timedelta(microseconds=min(int(micros), _MAX_MICROS)), str(uuid.UUID(draft_hex))
