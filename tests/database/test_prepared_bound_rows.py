"""Rows converted ahead of their transaction (prepared.py, `PreparedStatement.bind`): what they store is
what the same values given at once store, on SQLite and PostgreSQL; late values are given exactly."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from webhook_service.database.prepared import PreparedStatement
from webhook_service.database.tables import REQUEST_LOG

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
