"""messages indexed by sender (messages: from_number, seq)

The read API's and the console's `from` filter found a sender's messages by reading the tenant's (or,
for an operator of every tenant, all) messages from the newest back until the page was full: every one of
them for a customer's number seen a few times, past the statement timeout on a busy service.

Built CONCURRENTLY on PostgreSQL, as 0010's to 0013's indexes (`database/concurrent_indexes.py`).

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06 22:05:00
"""

from alembic import op

from webhook_service.database.concurrent_indexes import create_indexes, drop_indexes

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

INDEXES = {"ix_messages_from_number_seq": ("messages", ["from_number", "seq"])}


def upgrade() -> None:
    create_indexes(op, INDEXES)


def downgrade() -> None:
    drop_indexes(op, INDEXES)
