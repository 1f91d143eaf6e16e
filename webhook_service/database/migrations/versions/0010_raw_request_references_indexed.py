"""the references to raw requests indexed (messages.raw_request_id, status_events.raw_request_id)

Deleting a raw request sets these to NULL (ON DELETE SET NULL), and without an index each deletion scanned
both tables whole: pruning a batch of 1,000 raw requests took 1,000 scans of each (on PostgreSQL a prune
with 60,000 messages outlasted the statement timeout in its first batch, so raw requests could no longer
be pruned at all), and a duplicate webhook, whose raw request the intake deletes, paid for two scans on
the hot path (75 ms with a million messages).

On PostgreSQL the indexes are built CONCURRENTLY, so that webhooks keep being stored while a large table
is indexed; an index a failed build left invalid is dropped and built again.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06 13:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

INDEXES = {"ix_messages_raw_request_id": "messages", "ix_status_events_raw_request_id": "status_events"}


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        for name, table in INDEXES.items():
            op.create_index(name, table, ["raw_request_id"])
        return
    # CONCURRENTLY cannot run inside a transaction: the block commits what came before it.
    with op.get_context().autocommit_block():
        for name, table in INDEXES.items():
            if _left_invalid(name):
                op.execute(f"DROP INDEX CONCURRENTLY {name}")
            op.create_index(name, table, ["raw_request_id"], postgresql_concurrently=True, if_not_exists=True)


def downgrade() -> None:
    for name, table in INDEXES.items():
        op.drop_index(name, table_name=table)


def _left_invalid(name: str) -> bool:
    query = sa.text("SELECT NOT indisvalid FROM pg_index WHERE indexrelid = to_regclass(:name)")
    return bool(op.get_bind().execute(query, {"name": name}).scalar())
