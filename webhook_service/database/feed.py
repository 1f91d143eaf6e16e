"""The event feed (GET /api/v1/events): what happened, in order, for consumers that remember a cursor.

Ordering guarantee: a reader that has seen event N never later discovers an event with an id below N.
Sequences alone do not give that on PostgreSQL (a transaction can take id 6 and commit before the one
holding id 5), so ids are allocated only under a transaction-scoped advisory lock, held until commit:
feed writers commit one after the other. SQLite already admits one writer at a time.
"""

from __future__ import annotations

import sqlalchemy as sa

from webhook_service.database.prepared import PreparedStatement
from webhook_service.database.tables import EVENTS

INSERT_EVENTS = PreparedStatement(sa.insert(EVENTS))
LOCK_FEED = PreparedStatement(sa.text("SELECT pg_advisory_xact_lock(:key)"))

# An arbitrary constant that names "the feed" among PostgreSQL advisory locks.
FEED_LOCK_KEY = 0x5EED_F00D

MESSAGE_RECEIVED = "message.received"
MESSAGE_STATUS = "message.status"
ATTACHMENT_STORED = "attachment.stored"
ATTACHMENT_REJECTED = "attachment.rejected"
ATTACHMENT_FAILED = "attachment.failed"
# Push delivery gave up on one of the tenant's endpoints (delivery/engine.py).
ENDPOINT_DISABLED = "endpoint.disabled"
TYPES = (MESSAGE_RECEIVED, MESSAGE_STATUS, ATTACHMENT_STORED, ATTACHMENT_REJECTED, ATTACHMENT_FAILED, ENDPOINT_DISABLED)


def append(connection: sa.Connection, rows: list[dict]) -> None:
    """Add events (dicts of FeedEvent columns) at the end of the feed. Call last in the transaction,
    just before commit, so the lock is held as briefly as possible."""
    if not rows:
        return
    if connection.dialect.name == "postgresql":
        LOCK_FEED.run(connection, {"key": FEED_LOCK_KEY})
    INSERT_EVENTS.run_many(connection, rows)
