"""A feed event's row (database/feed.py, `append`) for tests that write to the feed directly."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from webhook_service.database import feed


def feed_row(tenant_id: str = "t", **data: Any) -> dict:
    """A message.received event of no message, now, with `data`."""
    return {
        "tenant_id": tenant_id,
        "type": feed.MESSAGE_RECEIVED,
        "message_id": None,
        "attachment_id": None,
        "created_at": datetime.now(UTC),
        "data": data,
    }
