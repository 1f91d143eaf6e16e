"""Which write transactions wait for the disk at commit: all of them, except those the caller marks
`durable=False` (attachment claims), and marking one never leaks into the next transaction on the same
pooled connection."""

from __future__ import annotations

import threading

import pytest

from webhook_service.database.engine import Database, DiscardUnit

# PRAGMA synchronous answers a number: 1 is NORMAL, 2 is FULL.
SQLITE_FULL, SQLITE_NORMAL = 2, 1


def commit_setting(connection) -> object:
    if connection.dialect.name == "sqlite":
        return connection.exec_driver_sql("PRAGMA synchronous").scalar()
    return connection.exec_driver_sql("SHOW synchronous_commit").scalar()


def durable_value(dialect: str) -> object:
    return SQLITE_FULL if dialect == "sqlite" else "on"


def relaxed_value(dialect: str) -> object:
    return SQLITE_NORMAL if dialect == "sqlite" else "off"


@pytest.fixture
def database(runtime) -> Database:
    return runtime.db


@pytest.fixture
def scratch_table(database):
    """Names a table the test creates; it is dropped afterwards, so the PostgreSQL database the other
    tests share keeps exactly the schema the migrations made."""
    names = []
    yield names.append
    with database.writing() as connection:
        for name in names:
            connection.exec_driver_sql(f"DROP TABLE IF EXISTS {name}")


def test_write_transactions_are_durable_by_default(database):
    with database.writing() as connection:
        assert commit_setting(connection) == durable_value(database.dialect)
    with database.transaction() as session:
        assert commit_setting(session.connection()) == durable_value(database.dialect)


def test_a_not_durable_transaction_skips_the_flush_only_for_itself(database):
    # One pooled connection at a time on SQLite's writer path, so every turn below reuses the first
    # transaction's connection: the relaxed setting must be put back for the next durable one.
    for _ in range(2):
        with database.writing(durable=False) as connection:
            assert commit_setting(connection) == relaxed_value(database.dialect)
        with database.writing() as connection:
            assert commit_setting(connection) == durable_value(database.dialect)
        assert database.group_commit.run(commit_setting) == durable_value(database.dialect)


def test_a_not_durable_commit_is_still_visible_to_everyone(database, scratch_table):
    scratch_table("probe_relaxed")
    with database.writing(durable=False) as connection:
        connection.exec_driver_sql("CREATE TABLE probe_relaxed (value INTEGER)")
        connection.exec_driver_sql("INSERT INTO probe_relaxed VALUES (7)")
    other = Database(database.url)
    try:
        with other.reading() as session:
            assert session.connection().exec_driver_sql("SELECT value FROM probe_relaxed").scalar() == 7
    finally:
        other.dispose()


def test_group_commit_keeps_its_units_apart_and_durable(database, scratch_table):
    """Concurrent units share commits; a discarded one rolls back alone."""
    scratch_table("probe_units")
    with database.writing() as connection:
        connection.exec_driver_sql("CREATE TABLE probe_units (value INTEGER)")
    settings_seen, results = [], []
    barrier = threading.Barrier(8)

    def unit(value):
        def work(connection):
            settings_seen.append(commit_setting(connection))
            connection.exec_driver_sql(f"INSERT INTO probe_units VALUES ({value})")
            if value % 2:
                raise DiscardUnit(f"discarded {value}")
            return f"kept {value}"

        barrier.wait()
        results.append(database.group_commit.run(work))

    threads = [threading.Thread(target=unit, args=(value,)) for value in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == sorted([f"kept {v}" for v in range(0, 8, 2)] + [f"discarded {v}" for v in range(1, 8, 2)])
    assert set(settings_seen) == {durable_value(database.dialect)}
    with database.reading() as session:
        stored = session.connection().exec_driver_sql("SELECT value FROM probe_units ORDER BY value").scalars()
        assert list(stored) == [0, 2, 4, 6]
