"""push delivery's history indexed for pruning (deliveries.completed_at, delivery_attempts.attempted_at)

`prune` deletes attempts made, and finished deliveries completed, before its cutoff, 1,000 per statement;
without an index on those times every statement scanned its table whole, so a prune's time grew with the
table's size times the number of batches, and a large enough table outlasted the statement timeout in
every batch: the history could no longer be pruned.

Built CONCURRENTLY on PostgreSQL, as 0010's indexes (`database/concurrent_indexes.py`).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06 13:40:00
"""

from alembic import op

from webhook_service.database.concurrent_indexes import create_indexes, drop_indexes

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

INDEXES = {
    "ix_deliveries_completed_at": ("deliveries", ["completed_at"]),
    "ix_delivery_attempts_attempted_at": ("delivery_attempts", ["attempted_at"]),
}


def upgrade() -> None:
    create_indexes(op, INDEXES)


def downgrade() -> None:
    drop_indexes(op, INDEXES)
