"""Deleting old rows in batches: every statement stays well inside the database's statement timeout
however much has built up, and no transaction holds thousands of row locks."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from webhook_service.database.engine import Database

PRUNE_BATCH = 1000


def delete_in_batches(db: Database, table: sa.Table, *conditions: Any) -> int:
    """Delete the rows of `table` (which has an `id` primary key) matching `conditions`, PRUNE_BATCH per
    statement and transaction; returns how many."""
    deleted = 0
    while True:
        batch = sa.select(table.c.id).where(*conditions).limit(PRUNE_BATCH).scalar_subquery()
        with db.writing() as connection:
            count = connection.execute(sa.delete(table).where(table.c.id.in_(batch))).rowcount
        deleted += count
        if count < PRUNE_BATCH:
            return deleted
