"""PostgreSQL: the messages' key led by the provider's message id (a unique index on provider_message_id,
provider, tenant_id, instead of tenant_id, provider, provider_message_id)

A message's key is the same three columns, and a lookup by the whole key (the intake's, a status
report's, `ON CONFLICT`) uses the index as before. What the new order adds: `providerMessageId` without
`provider` (the read API's filter, the console's search, an operator's of every tenant) is a prefix of
it, where before PostgreSQL read every message of a large table for it (a parallel sequential scan, 95 ms
per million). An index of its own, (provider_message_id, seq), was tried and taken out: PostgreSQL then
found a report's message by it rather than by the key (both estimated one row, it is the narrower).

The new index is built CONCURRENTLY (database/concurrent_indexes.py), so the intake keeps storing while a
large table is indexed; the constraint then moves onto it (`UNIQUE USING INDEX`), and the old index goes
with the old constraint, under a lock held for that swap alone.

SQLite keeps its order: it holds a table's unique constraints in the table's definition, so reordering
would rebuild `messages`, and its planner, which keeps no statistics, would still prefer the tenant's
index for the search (it needs no sort); the models declare the key for each database (tables.py).

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-07 03:10:00
"""

from alembic import op

from webhook_service.database.concurrent_indexes import create_indexes

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

OLD = ("uq_messages_tenant_id_provider_provider_message_id", ["tenant_id", "provider", "provider_message_id"])
NEW = ("uq_messages_provider_message_id_provider_tenant_id", ["provider_message_id", "provider", "tenant_id"])


def upgrade() -> None:
    _move_key(OLD, NEW)


def downgrade() -> None:
    _move_key(NEW, OLD)


def _move_key(old: tuple[str, list[str]], new: tuple[str, list[str]]) -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    (old_name, _), (new_name, new_columns) = old, new
    create_indexes(op, {new_name: ("messages", new_columns)}, unique=True)
    op.execute(
        f"ALTER TABLE messages DROP CONSTRAINT {old_name}, ADD CONSTRAINT {new_name} UNIQUE USING INDEX {new_name}"
    )
