"""No migration loses a row, in either direction, on either database.

SQLite cannot alter most of a table, so a migration there rebuilds it (Alembic's batch mode: a copy, the
old table dropped, the copy renamed). With foreign keys on, SQLite deletes the old table's rows before it
drops it, and every `ON DELETE CASCADE` below it goes too: migration 0008 rebuilt `endpoints`, and an
upgrade across it deleted every delivery and delivery attempt of a SQLite deployment. Migrations now run
with foreign keys off on SQLite and check them before they commit (database/migrate.py).

So the database is filled at head with a row in every table (each foreign key pointing at a row of its
table), then taken down one revision at a time to the first and back up: at every step, each table that
is there on both sides of it still holds its rows."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command

from tests.support.migrations import REVISIONS, empty_every_table, schema_differences
from webhook_service.database.engine import make_engine
from webhook_service.database.migrate import (
    alembic_config,
    foreign_key_violations,
    require_foreign_keys_hold,
    sqlite_foreign_keys_off,
)
from webhook_service.database.tables import Base


def _value(column: sa.Column, keys: dict[str, Any]) -> Any:
    """A value `column` takes: for a foreign key, the key of the row inserted in the table it refers to
    (every table's is its primary key); else one of its type."""
    for foreign_key in column.foreign_keys:
        return keys[foreign_key.target_fullname]
    kind = column.type.impl if isinstance(column.type, sa.TypeDecorator) else column.type
    if isinstance(kind, sa.JSON):
        return {}
    python_type = kind.python_type
    if python_type is datetime:
        return datetime(2026, 12, 1, tzinfo=UTC)
    return {str: "v", int: 1, float: 1.0, bool: False, bytes: b"row"}[python_type]


def fill_every_table(engine: sa.Engine) -> dict[str, int]:
    """A row in every table of the models, parents first, with a value in every column that refers to
    another table and in every one that needs one; how many rows each table then holds."""
    keys: dict[str, Any] = {}  # "table.column" -> the value of the row inserted there
    with engine.begin() as connection:
        for table in Base.metadata.sorted_tables:
            row = {column.name: _value(column, keys) for column in table.columns if _given(column)}
            inserted = connection.execute(table.insert().values(row).returning(*table.primary_key.columns)).one()
            keys.update(
                (f"{table.name}.{column.name}", key)
                for column, key in zip(table.primary_key.columns, inserted, strict=True)
            )
    return row_counts(engine)


def _given(column: sa.Column) -> bool:
    if column.foreign_keys:
        return True
    has_default = column.default is not None or column.server_default is not None
    return not (column.nullable or has_default or column.autoincrement is True)


def row_counts(engine: sa.Engine) -> dict[str, int]:
    with engine.connect() as connection:
        tables = sa.inspect(connection).get_table_names()
        return {
            name: connection.execute(sa.text(f'SELECT count(*) FROM "{name}"')).scalar_one()
            for name in tables
            if name != "alembic_version"
        }


def _kept(before: dict[str, int], after: dict[str, int]) -> dict[str, tuple[int, int]]:
    """The tables on both sides of a step whose count changed: name -> (before, after)."""
    return {name: (before[name], after[name]) for name in before.keys() & after.keys() if before[name] != after[name]}


def test_every_migration_keeps_every_row_down_to_the_first_and_back_up(database_url):
    config = alembic_config(database_url)
    engine = make_engine(database_url)
    try:
        counts = fill_every_table(engine)
        assert set(counts) == {table.name for table in Base.metadata.sorted_tables}
        assert set(counts.values()) == {1}
        engine.dispose()
        steps = list(zip(reversed(REVISIONS[:-1]), reversed(REVISIONS[1:]), strict=True))
        for older, newer in steps:  # head down to the first revision
            command.downgrade(config, older)
            engine.dispose()
            after = row_counts(engine)
            assert _kept(counts, after) == {}, f"the downgrade from {newer} to {older} lost rows"
            counts = after
        for older, newer in reversed(steps):  # and back up to head
            command.upgrade(config, newer)
            engine.dispose()
            after = row_counts(engine)
            assert _kept(counts, after) == {}, f"the upgrade from {older} to {newer} lost rows"
            counts = after
        with engine.connect() as connection:
            assert schema_differences(connection) == []
    finally:
        # For the tests that share this database (PostgreSQL's, per worker), whatever failed here.
        command.upgrade(config, "head")
        empty_every_table(engine)
        engine.dispose()


def test_a_sqlite_migration_that_leaves_a_row_pointing_at_none_is_not_committed(tmp_path):
    """Foreign keys are off while SQLite migrates: the check before the commit is what holds them. A row
    that pointed at none before the migration does not stop it (an operator could not upgrade at all)."""
    url = f"sqlite:///{tmp_path / 'service.db'}"
    command.upgrade(alembic_config(url), "head")
    engine = make_engine(url)
    try:
        fill_every_table(engine)
        with engine.connect() as connection, sqlite_foreign_keys_off(connection), connection.begin():
            connection.exec_driver_sql("UPDATE status_events SET message_seq = -1")
            before = foreign_key_violations(connection)
            assert before == {("status_events", "messages"): 1}
            require_foreign_keys_hold(connection, before)  # the same breakage as before: no refusal
            connection.exec_driver_sql("UPDATE deliveries SET endpoint_id = 'no-such-endpoint'")
            with pytest.raises(RuntimeError, match=r"1 row\(s\) of deliveries refer to no row of endpoints"):
                require_foreign_keys_hold(connection, before)
        with engine.connect() as connection:  # and the connection has its foreign keys back on
            assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar_one() == 1
    finally:
        engine.dispose()
