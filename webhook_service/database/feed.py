"""The event feed (GET /api/v1/events): what happened, in order, for consumers that remember a cursor.

Ordering guarantee: a reader that has seen event N never later discovers an event with an id below N.
Sequences alone do not give that on PostgreSQL (a transaction can take id 6 and commit before the one
holding id 5), so ids are allocated only under a transaction-scoped advisory lock, held until commit:
feed writers commit one after the other. SQLite already admits one writer at a time.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

from webhook_service.database.engine import ORDER_LAST, insert_at_commit, note_transaction_lock, transaction_lock_held
from webhook_service.database.prepared import BoundRow, PreparedStatement
from webhook_service.database.tables import EVENTS

INSERT_EVENTS = PreparedStatement(sa.insert(EVENTS))
LOCK_FEED = PreparedStatement(sa.text("SELECT pg_advisory_xact_lock(:key)"))

# The last event's id (0 for none), of the whole feed and of one tenant's. By the guarantee above, no
# event at or below it can appear after it is read.
HEAD = sa.select(sa.func.coalesce(sa.func.max(EVENTS.c.id), 0))
TENANT_HEAD = HEAD.where(EVENTS.c.tenant_id == sa.bindparam("tenant_id"))

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


def bound_event(dialect: Dialect, row: dict) -> BoundRow:
    """An event (a dict of FeedEvent columns) converted ahead of the transaction that appends it."""
    return INSERT_EVENTS.bind(dialect, row)


def append(connection: sa.Connection, rows: list[dict | BoundRow]) -> None:
    """Add events (dicts of FeedEvent columns, or `bound_event`s) at the end of the feed. In a group commit, after
    everything else the batch writes, just before its commit, so that the lock is held as briefly as
    possible; elsewhere, at once (call it last in the transaction)."""
    if rows:
        insert_at_commit(connection, "feed", rows, _insert, order=ORDER_LAST)


def _insert(connection: sa.Connection, rows: list[dict | BoundRow]) -> None:
    if connection.dialect.name == "postgresql" and not transaction_lock_held(connection, FEED_LOCK_KEY):
        LOCK_FEED.run(connection, {"key": FEED_LOCK_KEY})
        note_transaction_lock(connection, FEED_LOCK_KEY)
    INSERT_EVENTS.run_many(connection, rows)
