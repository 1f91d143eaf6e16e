"""the references to raw requests indexed (messages.raw_request_id, status_events.raw_request_id)

Deleting a raw request sets these to NULL (ON DELETE SET NULL), and without an index each deletion scanned
both tables whole: pruning a batch of 1,000 raw requests took 1,000 scans of each (on PostgreSQL a prune
with 60,000 messages outlasted the statement timeout in its first batch, so raw requests could no longer
be pruned at all), and a duplicate webhook, whose raw request the intake deletes, paid for two scans on
the hot path (75 ms with a million messages).

On PostgreSQL the indexes are built CONCURRENTLY, so that webhooks keep being stored while a large table
is indexed (`database/concurrent_indexes.py`).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06 13:00:00
"""

from alembic import op

from webhook_service.database.concurrent_indexes import create_indexes, drop_indexes

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

INDEXES = {
    "ix_messages_raw_request_id": ("messages", ["raw_request_id"]),
    "ix_status_events_raw_request_id": ("status_events", ["raw_request_id"]),
}


def upgrade() -> None:
    create_indexes(op, INDEXES)


def downgrade() -> None:
    drop_indexes(op, INDEXES)
