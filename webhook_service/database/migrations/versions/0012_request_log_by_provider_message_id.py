"""the request log indexed by provider message id (PostgreSQL: a GIN index on request_log.provider_message_ids)

A message's console page lists the requests that named it, and the request log can be searched by
provider message id. Both looked for the id in every entry's JSON list, reading the log backwards from
its newest entry until they had found their page: for a message a day old on a busy service that was
millions of entries, past the statement timeout, and the page answered as if the database were down.

GIN, with `jsonb_path_ops` (containment, `@>`, is the only question asked of it) and fastupdate off (each
webhook's insert pays for its own entry, instead of one insert now and then cleaning up thousands in a
group commit's batch: tables.py), built CONCURRENTLY as 0010's and 0011's indexes
(`database/concurrent_indexes.py`). SQLite has no index of the kind: there the
search still reads the log (about 0.25 s per million entries).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06 22:20:00
"""

from alembic import op

from webhook_service.database.concurrent_indexes import create_indexes, drop_indexes

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

INDEXES = {"ix_request_log_provider_message_ids": ("request_log", ["provider_message_ids"])}


def upgrade() -> None:
    create_indexes(
        op,
        INDEXES,
        postgresql_only=True,
        postgresql_using="gin",
        postgresql_ops={"provider_message_ids": "jsonb_path_ops"},
        postgresql_with={"fastupdate": "off"},
    )


def downgrade() -> None:
    drop_indexes(op, INDEXES, postgresql_only=True)
