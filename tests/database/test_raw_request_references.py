"""Deleting a raw request sets the messages' and status reports' references to it to NULL (ON DELETE SET
NULL). Pruning deletes raw requests by the thousand, and the intake deletes a duplicate webhook's on the hot
path; without an index on the referencing column, each deletion scanned the whole table. Migration 0010
adds the indexes (tests/database/test_concurrent_index_migrations.py); these tests hold the rule for every
foreign key, read the plans of the statements the database runs for a deletion, and prune at a scale that
outlasted the statement timeout without them."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from tests.support.plans import plan, rows_read
from webhook_service.database.engine import Database, make_engine
from webhook_service.database.limits import DatabaseLimits
from webhook_service.database.tables import Base
from webhook_service.intake.retention import Pruned, prune_requests

# Foreign keys whose parent rows are never deleted, so nothing ever looks their rows up by that key.
NEVER_DELETED = {("deliveries", "event_id"): "the event feed is append-only: events are never deleted"}

REFERENCES = {"messages": "ix_messages_raw_request_id", "status_events": "ix_status_events_raw_request_id"}


def test_every_foreign_key_whose_parent_rows_are_deleted_is_indexed():
    unindexed = []
    for table in Base.metadata.sorted_tables:
        leading = [[column.name for column in index.columns] for index in table.indexes]
        leading += [
            [column.name for column in constraint.columns]
            for constraint in table.constraints
            if isinstance(constraint, sa.UniqueConstraint | sa.PrimaryKeyConstraint)
        ]
        for key in table.foreign_key_constraints:
            columns = [column.name for column in key.columns]
            if (table.name, *columns) in NEVER_DELETED:
                continue
            if not any(index[: len(columns)] == columns for index in leading):
                unindexed.append(f"{table.name}.{','.join(columns)}")
    assert unindexed == []


def test_the_exempt_keys_name_columns_that_exist():
    for table, column in NEVER_DELETED:
        assert column in Base.metadata.tables[table].c


@pytest.mark.parametrize("table", sorted(REFERENCES))
def test_a_deleted_raw_requests_references_are_found_by_index(database_url, table):
    """The statement each database runs for every deleted raw request, per referencing table."""
    engine = make_engine(database_url)
    try:
        with engine.connect() as connection:
            if connection.dialect.name == "postgresql":  # PostgreSQL's own (ri_triggers.c)
                statement = f"UPDATE ONLY {table} SET raw_request_id = NULL WHERE %(id)s = raw_request_id"
                found = plan(connection, statement, {"id": 1})
            else:
                found = plan(connection, f"UPDATE {table} SET raw_request_id = NULL WHERE raw_request_id = ?", (1,))
    finally:
        engine.dispose()
    assert any(REFERENCES[table] in line for line in found), found


# PostgreSQL's only (it counts the rows PostgreSQL read); `database_url` empties the worker's database first,
# so that no earlier test's raw requests are among the ids it makes.
@pytest.mark.slow
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_pruning_many_raw_requests_reads_each_reference_by_index(database_url):
    """20,000 messages and status reports whose raw requests are past the cutoff, pruned under the service's
    statement timeout (2 s). Without the indexes each batch of 1,000 deletions scanned both tables 1,000
    times: about a second per batch on a quick machine, and at 60,000 raw requests the first batch
    outlasted the timeout, so that raw requests could no longer be pruned at all. With them a batch takes
    some tens of milliseconds. What is held is the work, not the time (a machine busy enough made a
    batch last half a second): the rows PostgreSQL read from both tables, a few per deletion, where the
    scans read 20,000 per deletion, and from raw_requests."""
    database = Database(database_url, DatabaseLimits(statement_timeout=2.0))
    count = 20_000
    filler = sa.create_engine(database_url, poolclass=sa.pool.NullPool)
    try:
        with filler.begin() as connection:
            _fill(connection, count)
        with filler.begin() as connection:
            # Statistics of the tables as filled, as autovacuum keeps a deployment's: with those another
            # test's few rows had left, each batch's DELETE was planned as a nested loop that read the
            # whole of raw_requests' primary key for every one of its 1,000 rows (5-8 s a batch).
            connection.exec_driver_sql("ANALYZE raw_requests, messages, status_events")
        before = {table: rows_read(filler, table) for table in (*REFERENCES, "raw_requests")}
        assert prune_requests(database, datetime.now(UTC) - timedelta(days=30)) == Pruned(count, 0, 0, 0)
        database.engine.dispose()  # its sessions report what they read as they end
        time.sleep(0.2)
        # The references: a few per deletion. The batches' own reads of raw_requests: each batch reads the
        # index entries of the rows the batches before it deleted too, until a scan marks them dead (at
        # most about 12 per deletion over 20 batches), where the nested loop read 11,000.
        bounds = {**dict.fromkeys(REFERENCES, 5 * count), "raw_requests": 20 * count}
        for table, bound in bounds.items():
            read = rows_read(filler, table) - before[table]
            assert read < bound, f"{read} rows of {table} read to prune {count} raw requests"
        with database.engine.connect() as connection:
            for table in REFERENCES:
                remaining = connection.exec_driver_sql(
                    f"SELECT count(*), count(raw_request_id) FROM {table} WHERE provider_message_id LIKE 'prune-%%'"
                    if table == "messages"
                    else f"SELECT count(*), count(raw_request_id) FROM {table} WHERE dedupe_key LIKE 'prune-%%'"
                ).one()
                assert tuple(remaining) == (count, 0), table
    finally:
        database.dispose()
        filler.dispose()


def _fill(connection: sa.Connection, count: int) -> None:
    """`count` raw requests 40 days old, each with a message and a status report that came from it."""
    connection.exec_driver_sql(
        "INSERT INTO raw_requests (id, received_at, headers, body, method, url, request_id, provider)"
        " SELECT g, now() - interval '40 days', '[]', '\\x00', 'POST', 'http://x/', 'r' || g, 'standard'"
        " FROM generate_series(1, %(count)s) g",
        {"count": count},
    )
    connection.exec_driver_sql(
        "INSERT INTO messages (id, tenant_id, provider, connection, provider_message_id, direction, to_numbers,"
        " has_content, received_at, updated_at, extra, raw_request_id)"
        " SELECT 'm' || g, 't', 'standard', 'c', 'prune-' || g, 'inbound', '[]', true, now(), now(), '{}', g"
        " FROM generate_series(1, %(count)s) g",
        {"count": count},
    )
    connection.exec_driver_sql(
        "INSERT INTO status_events (message_seq, dedupe_key, status, provider_status, received_at, applied,"
        " raw_request_id)"
        " SELECT seq, 'prune-' || raw_request_id, 'delivered', 'delivered', now(), true, raw_request_id"
        " FROM messages WHERE provider_message_id LIKE 'prune-%%'"
    )
