"""Statements run on the driver's cursor (prepared.py). Rows converted ahead of their transaction
(`PreparedStatement.bind`) store what the same values given at once store, on SQLite and PostgreSQL, and
late values are given exactly. Many rows go in with the count of what was inserted, conflicts left out;
on SQLite as few statements (multi-row inserts, in chunks)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from webhook_service.database.prepared import MULTI_ROW_INSERT_ROWS, PreparedStatement
from webhook_service.database.tables import EVENTS, REQUEST_LOG

INSERT = PreparedStatement(sa.insert(REQUEST_LOG))
LATE = ("raw_request_id", "latency_ms")


def _entry(request_id: str) -> dict:
    return {
        "request_id": request_id,
        "received_at": datetime(2026, 12, 5, 23, 59, 58, 123456, tzinfo=UTC),
        "provider": "standard",
        "connection": "main",
        "tenant_id": "tenant-a",
        "outcome": "accepted",
        "http_status": 200,
        "reason_code": None,
        "remote_addr": "127.0.0.1",
        "method": "POST",
        "url": "https://hooks.example/webhooks/standard/main",
        "headers": [["Content-Type", "application/json"]],
        "body_bytes": 42,
        "quarantine_id": None,
        "replay_of": None,
        "message_ids": ["m-1", "m-2"],
        "provider_message_ids": ["p-1"],
        "addresses": ["+15550001111", "🦜"],
    }


def _stored(database, request_id: str) -> dict:
    with database.reading() as session:
        row = session.execute(sa.select(REQUEST_LOG).where(REQUEST_LOG.c.request_id == request_id)).one()
    return {key: value for key, value in row._asdict().items() if key not in ("id", "request_id")}


def test_a_bound_row_stores_what_the_values_given_at_once_store(runtime):
    database = runtime.db
    late_bound = INSERT.bind(database.engine.dialect, _entry("late"), late=LATE)
    with database.writing() as connection:
        INSERT.run_many(connection, [dict(_entry("direct"), raw_request_id=7, latency_ms=1.25)])
        INSERT.run_many(
            connection,
            [
                late_bound.given(raw_request_id=7, latency_ms=1.25),
                INSERT.bind(database.engine.dialect, dict(_entry("bound"), raw_request_id=7, latency_ms=1.25)),
            ],
        )
        INSERT.run(connection, dict(_entry("run"), raw_request_id=7, latency_ms=1.25))
    direct = _stored(database, "direct")
    assert direct["latency_ms"] == 1.25 and direct["raw_request_id"] == 7
    assert direct["addresses"] == ["+15550001111", "🦜"]
    assert _stored(database, "late") == direct
    assert _stored(database, "bound") == direct
    assert _stored(database, "run") == direct


def test_late_values_must_be_given_exactly(runtime):
    dialect = runtime.db.engine.dialect
    bound = INSERT.bind(dialect, _entry("late"), late=LATE)
    with pytest.raises(ValueError, match="late values"):
        bound.given(raw_request_id=1)
    with pytest.raises(ValueError, match="late values"):
        bound.given(raw_request_id=1, latency_ms=None, quarantine_id=3)
    with runtime.db.writing() as connection, pytest.raises(ValueError, match="were not given"):
        INSERT.run_many(connection, [bound])
    with runtime.db.writing() as connection, pytest.raises(ValueError, match="were not given"):
        INSERT.run(connection, bound)


INSERT_EVENT_ONCE = {
    name: PreparedStatement(dialect.insert(EVENTS).on_conflict_do_nothing(index_elements=["id"]))
    for name, dialect in (("sqlite", sqlite), ("postgresql", postgresql))
}


def _event(event_id: int) -> dict:
    return {
        "id": event_id,
        "tenant_id": "tenant-a",
        "type": "message.received",
        "message_id": f"m-{event_id}",
        "attachment_id": None,
        "created_at": datetime(2026, 12, 6, tzinfo=UTC),
        "data": {"n": event_id, "text": "🦜 \\ ' \" %s %(x)s"},
    }


def test_many_rows_go_in_counting_what_was_inserted(runtime):
    database = runtime.db
    insert = INSERT_EVENT_ONCE[database.dialect]
    rows = [_event(n) for n in range(1, 71)]
    with database.writing() as connection:
        first = insert.run_many(connection, rows[:10])
        # 10 of them there already; some bound ahead.
        second = insert.run_many(connection, rows[:35] + [insert.bind(connection.dialect, row) for row in rows[35:]])
    assert (first, second) == (10, 60)
    with database.reading() as session:
        stored = session.execute(sa.select(EVENTS.c.id, EVENTS.c.data).order_by(EVENTS.c.id)).all()
    assert [row.id for row in stored] == list(range(1, 71))
    assert [row.data for row in stored] == [row["data"] for row in rows]


# Multi-row inserts are SQLite's: on PostgreSQL, psycopg's executemany is one round trip already, and one
# multi-row statement measured no faster.
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_on_sqlite_a_chunk_is_one_statement(runtime):
    """One statement per chunk: sqlite3's executemany would run one per row (and hand the GIL over for
    each, inside the writer turn)."""
    database = runtime.db
    statements: list[str] = []
    with database.writing() as connection:
        connection.connection.dbapi_connection.set_trace_callback(statements.append)
        try:
            INSERT_EVENT_ONCE["sqlite"].run_many(connection, [_event(n) for n in range(1, 71)])
        finally:
            connection.connection.dbapi_connection.set_trace_callback(None)
    assert len(statements) == -(-70 // MULTI_ROW_INSERT_ROWS)
    assert all(statement.startswith("INSERT INTO events") for statement in statements)


def test_inserts_return_no_key_nobody_reads(runtime):
    """SQLAlchemy adds `RETURNING id` to an insert on PostgreSQL unless told not to."""
    keys = tuple(column.key for column in EVENTS.c if column.key != "id")
    compiled = PreparedStatement(sa.insert(EVENTS))._for(runtime.db.engine.dialect, keys)
    assert "RETURNING" not in compiled.sql
