"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-21 23:39:00.105857
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import webhook_service.database.tables

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("type", sa.String(length=32), nullable=False),
        sa.Column("message_id", sa.String(length=36), nullable=True),
        sa.Column("attachment_id", sa.String(length=36), nullable=True),
        sa.Column("created_at", webhook_service.database.tables.UTCDateTime(timezone=True), nullable=False),
        sa.Column(
            "data", sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"), nullable=False
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_events")),
    )
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.create_index("ix_events_tenant_id", ["tenant_id", "id"], unique=False)

    op.create_table(
        "quarantined_requests",
        sa.Column("http_status", sa.Integer(), nullable=False),
        sa.Column("reason_code", sa.String(length=64), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("resolved_at", webhook_service.database.tables.UTCDateTime(timezone=True), nullable=True),
        sa.Column("resolution", sa.String(length=32), nullable=True),
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("request_id", sa.String(length=64), nullable=False),
        sa.Column("received_at", webhook_service.database.tables.UTCDateTime(timezone=True), nullable=False),
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("connection", sa.String(length=64), nullable=True),
        sa.Column("tenant_id", sa.String(length=64), nullable=True),
        sa.Column("method", sa.String(length=8), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column(
            "headers", sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"), nullable=False
        ),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("remote_addr", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_quarantined_requests")),
    )
    with op.batch_alter_table("quarantined_requests", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_quarantined_requests_received_at"), ["received_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_quarantined_requests_tenant_id"), ["tenant_id"], unique=False)

    op.create_table(
        "raw_requests",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("request_id", sa.String(length=64), nullable=False),
        sa.Column("received_at", webhook_service.database.tables.UTCDateTime(timezone=True), nullable=False),
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("connection", sa.String(length=64), nullable=True),
        sa.Column("tenant_id", sa.String(length=64), nullable=True),
        sa.Column("method", sa.String(length=8), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column(
            "headers", sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"), nullable=False
        ),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("remote_addr", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_raw_requests")),
    )
    with op.batch_alter_table("raw_requests", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_raw_requests_received_at"), ["received_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_raw_requests_tenant_id"), ["tenant_id"], unique=False)

    op.create_table(
        "messages",
        sa.Column("seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("connection", sa.String(length=64), nullable=False),
        sa.Column("provider_message_id", sa.String(length=255), nullable=False),
        sa.Column("direction", sa.String(length=8), nullable=False),
        sa.Column("from_number", sa.String(length=64), nullable=True),
        sa.Column(
            "to_numbers", sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"), nullable=False
        ),
        sa.Column("text", sa.Text(), nullable=True),
        sa.Column("subject", sa.Text(), nullable=True),
        sa.Column("has_content", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=True),
        sa.Column("provider_status", sa.String(length=64), nullable=True),
        sa.Column("status_updated_at", webhook_service.database.tables.UTCDateTime(timezone=True), nullable=True),
        sa.Column("occurred_at", webhook_service.database.tables.UTCDateTime(timezone=True), nullable=True),
        sa.Column("received_at", webhook_service.database.tables.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", webhook_service.database.tables.UTCDateTime(timezone=True), nullable=False),
        sa.Column(
            "extra", sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"), nullable=False
        ),
        sa.Column("raw_request_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.ForeignKeyConstraint(
            ["raw_request_id"],
            ["raw_requests.id"],
            name=op.f("fk_messages_raw_request_id_raw_requests"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_messages")),
        sa.UniqueConstraint("id", name=op.f("uq_messages_id")),
        sa.UniqueConstraint(
            "tenant_id",
            "provider",
            "provider_message_id",
            name=op.f("uq_messages_tenant_id_provider_provider_message_id"),
        ),
    )
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.create_index("ix_messages_tenant_seq", ["tenant_id", "seq"], unique=False)

    op.create_table(
        "attachments",
        sa.Column("seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("message_seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("index", sa.Integer(), nullable=False),
        sa.Column("source_url", sa.Text(), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=True),
        sa.Column("declared_content_type", sa.String(length=255), nullable=True),
        sa.Column("declared_size", sa.BigInteger(), nullable=True),
        sa.Column("content_type", sa.String(length=255), nullable=True),
        sa.Column("size", sa.BigInteger(), nullable=True),
        sa.Column("sha256", sa.String(length=64), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reason_code", sa.String(length=64), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("blob_key", sa.String(length=512), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", webhook_service.database.tables.UTCDateTime(timezone=True), nullable=True),
        sa.Column("claimed_until", webhook_service.database.tables.UTCDateTime(timezone=True), nullable=True),
        sa.Column("claim_token", sa.String(length=36), nullable=True),
        sa.Column("created_at", webhook_service.database.tables.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", webhook_service.database.tables.UTCDateTime(timezone=True), nullable=False),
        sa.Column("completed_at", webhook_service.database.tables.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["message_seq"], ["messages.seq"], name=op.f("fk_attachments_message_seq_messages"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_attachments")),
        sa.UniqueConstraint("id", name=op.f("uq_attachments_id")),
        sa.UniqueConstraint("message_seq", "index", name=op.f("uq_attachments_message_seq_index")),
    )
    with op.batch_alter_table("attachments", schema=None) as batch_op:
        batch_op.create_index("ix_attachments_status_due", ["status", "next_attempt_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_attachments_tenant_id"), ["tenant_id"], unique=False)

    op.create_table(
        "status_events",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("message_seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("dedupe_key", sa.String(length=128), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("provider_status", sa.String(length=64), nullable=False),
        sa.Column("error_code", sa.String(length=64), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("occurred_at", webhook_service.database.tables.UTCDateTime(timezone=True), nullable=True),
        sa.Column("received_at", webhook_service.database.tables.UTCDateTime(timezone=True), nullable=False),
        sa.Column("applied", sa.Boolean(), nullable=False),
        sa.Column("raw_request_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.ForeignKeyConstraint(
            ["message_seq"], ["messages.seq"], name=op.f("fk_status_events_message_seq_messages"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["raw_request_id"],
            ["raw_requests.id"],
            name=op.f("fk_status_events_raw_request_id_raw_requests"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_status_events")),
        sa.UniqueConstraint("message_seq", "dedupe_key", name=op.f("uq_status_events_message_seq_dedupe_key")),
    )


def downgrade() -> None:
    op.drop_table("status_events")
    with op.batch_alter_table("attachments", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_attachments_tenant_id"))
        batch_op.drop_index("ix_attachments_status_due")

    op.drop_table("attachments")
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_index("ix_messages_tenant_seq")

    op.drop_table("messages")
    with op.batch_alter_table("raw_requests", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_raw_requests_tenant_id"))
        batch_op.drop_index(batch_op.f("ix_raw_requests_received_at"))

    op.drop_table("raw_requests")
    with op.batch_alter_table("quarantined_requests", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_quarantined_requests_tenant_id"))
        batch_op.drop_index(batch_op.f("ix_quarantined_requests_received_at"))

    op.drop_table("quarantined_requests")
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_index("ix_events_tenant_id")

    op.drop_table("events")
