"""A database that refuses the rows of one table, by a trigger: a real error of the database's own (not an
outage: the service goes on), in the middle of work that otherwise goes through."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import sqlalchemy as sa

from webhook_service.database.engine import Database


@contextlib.contextmanager
def refusing_inserts(db: Database, table: str) -> Iterator[None]:
    with db.writing() as conn:
        postgresql = conn.dialect.name == "postgresql"
        if postgresql:
            conn.execute(
                sa.text(
                    "CREATE OR REPLACE FUNCTION refuse_row() RETURNS trigger AS "
                    "$$ BEGIN RAISE EXCEPTION 'refused by the test'; END $$ LANGUAGE plpgsql"
                )
            )
            conn.execute(
                sa.text(
                    f"CREATE TRIGGER refuse_{table} BEFORE INSERT ON {table} FOR EACH ROW EXECUTE FUNCTION refuse_row()"
                )
            )
        else:
            conn.execute(
                sa.text(
                    f"CREATE TRIGGER refuse_{table} BEFORE INSERT ON {table} BEGIN SELECT RAISE(ABORT, 'refused'); END"
                )
            )
    try:
        yield
    finally:
        with db.writing() as conn:
            conn.execute(sa.text(f"DROP TRIGGER refuse_{table}" + (f" ON {table}" if postgresql else "")))
