"""Indexes a migration adds to tables that may already be large, built without stopping the service's
writes: on PostgreSQL `CREATE INDEX CONCURRENTLY` (a plain build holds off every insert into the table
until it ends, and the intake's statements would time out meanwhile); elsewhere (SQLite) a plain one.

CONCURRENTLY cannot run inside a transaction, so the builds run in an autocommit block, which commits
what the migration did before them. A concurrent build that fails (a deadlock, a cancel) leaves its index
behind, invalid: such an index is dropped and built again, where `IF NOT EXISTS` alone would keep it."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

# Index name: (table, columns).
Indexes = dict[str, tuple[str, list[str]]]


def create_indexes(op: Any, indexes: Indexes, *, postgresql_only: bool = False, **postgresql_options: Any) -> None:
    """Create `indexes` (from a migration's `upgrade`; `op` is alembic's). `postgresql_only`: for index
    kinds SQLite has no counterpart of, which `postgresql_options` (postgresql_using, postgresql_ops) name."""
    if op.get_bind().dialect.name != "postgresql":
        if not postgresql_only:
            for name, (table, columns) in indexes.items():
                op.create_index(name, table, columns)
        return
    with op.get_context().autocommit_block():
        for name, (table, columns) in indexes.items():
            if _left_invalid(op.get_bind(), name):
                op.execute(f"DROP INDEX CONCURRENTLY {name}")
            op.create_index(
                name, table, columns, postgresql_concurrently=True, if_not_exists=True, **postgresql_options
            )


def drop_indexes(op: Any, indexes: Indexes, *, postgresql_only: bool = False) -> None:
    """Drop `indexes` (from a migration's `downgrade`)."""
    if postgresql_only and op.get_bind().dialect.name != "postgresql":
        return
    for name, (table, _columns) in indexes.items():
        op.drop_index(name, table_name=table)


def _left_invalid(connection: sa.Connection, name: str) -> bool:
    query = sa.text("SELECT NOT indisvalid FROM pg_index WHERE indexrelid = to_regclass(:name)")
    return bool(connection.execute(query, {"name": name}).scalar())
