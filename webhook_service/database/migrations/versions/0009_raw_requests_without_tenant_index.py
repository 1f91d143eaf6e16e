"""raw requests without their tenant index: no query reads raw requests by tenant (they are read by id, and
pruned by age), and every accepted webhook paid for an entry in it

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06 11:00:00
"""

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_raw_requests_tenant_id", table_name="raw_requests")


def downgrade() -> None:
    op.create_index("ix_raw_requests_tenant_id", "raw_requests", ["tenant_id"])
