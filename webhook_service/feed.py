"""The event feed (GET /api/v1/events): what happened, in order, for consumers that remember a cursor.

Ordering guarantee: a reader that has seen event N never later discovers an event with an id below N.
Sequences alone do not give that on PostgreSQL (a transaction can take id 6 and commit before the one
holding id 5), so ids are allocated only under a transaction-scoped advisory lock, held until commit:
feed writers commit one after the other. SQLite already admits one writer at a time.
"""
from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.orm import Session

from .models import FeedEvent

# An arbitrary constant that names "the feed" among PostgreSQL advisory locks.
FEED_LOCK_KEY = 0x5EED_F00D

MESSAGE_RECEIVED = "message.received"
MESSAGE_STATUS = "message.status"
ATTACHMENT_STORED = "attachment.stored"
ATTACHMENT_REJECTED = "attachment.rejected"
ATTACHMENT_FAILED = "attachment.failed"
TYPES = (MESSAGE_RECEIVED, MESSAGE_STATUS, ATTACHMENT_STORED, ATTACHMENT_REJECTED, ATTACHMENT_FAILED)


def append(session: Session, events: list[FeedEvent]) -> None:
    """Add events at the end of the feed. Call last in the transaction, just before commit."""
    if not events:
        return
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": FEED_LOCK_KEY})
    session.add_all(events)
    session.flush()
