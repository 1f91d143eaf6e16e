"""media uploads: the files clients upload through POST /api/v1/media

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 09:00:00
"""

import sqlalchemy as sa
from alembic import op

import webhook_service.database.tables

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "media_uploads",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("phone_number", sa.String(length=32), nullable=False),
        sa.Column("phone_number_id", sa.String(length=255), nullable=False),
        sa.Column("file_name", sa.String(length=255), nullable=False),
        sa.Column("content_type", sa.String(length=255), nullable=False),
        sa.Column("declared_content_type", sa.String(length=255), nullable=True),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("blob_key", sa.String(length=512), nullable=False),
        sa.Column("created_at", webhook_service.database.tables.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", webhook_service.database.tables.UTCDateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", webhook_service.database.tables.UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_by", sa.String(length=255), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_media_uploads")),
    )
    # Batch mode, as in 0001: on SQLite an index change may need a table rebuild.
    with op.batch_alter_table("media_uploads", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_media_uploads_tenant_id"), ["tenant_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("media_uploads", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_media_uploads_tenant_id"))

    op.drop_table("media_uploads")
