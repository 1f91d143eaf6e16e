"""rate limit hits: the console's sign-in attempts and actions, counted in the database so that every
web process of the deployment shares the count

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05 21:35:16
"""

import sqlalchemy as sa
from alembic import op

import webhook_service.database.tables

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rate_limit_hits",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("expires_at", webhook_service.database.tables.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rate_limit_hits")),
    )
    op.create_index("ix_rate_limit_hits_key_expires_at", "rate_limit_hits", ["key", "expires_at"])
    op.create_index("ix_rate_limit_hits_expires_at", "rate_limit_hits", ["expires_at"])


def downgrade() -> None:
    op.drop_table("rate_limit_hits")
