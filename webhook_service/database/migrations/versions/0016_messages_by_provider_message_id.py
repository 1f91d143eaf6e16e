"""messages indexed by provider message id (messages: provider_message_id, seq)

The read API's and the console's `providerMessageId` filter, without a provider: the key's unique index
(tenant_id, provider, provider_message_id) cannot find a message without its provider, and PostgreSQL
read the whole table (95 ms per million messages, in parallel; past the statement timeout at some twenty
million). `GET /api/v1/providers/<provider>/messages/<providerMessageId>` names the provider and was not
affected.

PostgreSQL only, built CONCURRENTLY as 0010's to 0014's indexes (`database/concurrent_indexes.py`).
SQLite, which keeps no statistics, kept reading the tenant's messages newest first through
`ix_messages_tenant_seq` with this index there (it gives the same order, and SQLite cannot tell a
provider's message id is rarer than a tenant): it would have cost every new message an entry for
nothing.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-07 01:10:00
"""

from alembic import op

from webhook_service.database.concurrent_indexes import create_indexes, drop_indexes

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

INDEXES = {"ix_messages_provider_message_id_seq": ("messages", ["provider_message_id", "seq"])}


def upgrade() -> None:
    create_indexes(op, INDEXES, postgresql_only=True)


def downgrade() -> None:
    drop_indexes(op, INDEXES, postgresql_only=True)
