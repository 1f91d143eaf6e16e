"""attachments by arrival: an index for the console overview's attachments since a time

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05 05:00:00
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The overview counts the attachments of the last day by state: without it, every look read the
    # whole table on PostgreSQL. (SQLite's planner, without statistics, may still prefer the status
    # index; the index costs each new attachment one more entry.)
    op.create_index("ix_attachments_created_at", "attachments", ["created_at", "status"])


def downgrade() -> None:
    op.drop_index("ix_attachments_created_at", table_name="attachments")
