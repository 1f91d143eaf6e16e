"""Migrations 0010 to 0014 add indexes to tables that may be large (`database/concurrent_indexes.py`:
CONCURRENTLY on PostgreSQL): each downgrades and upgrades cleanly on both databases, the models agree with
the migrated schema, and an index a failed concurrent build left invalid is built again. 0012's index is
PostgreSQL's only (GIN): SQLite must not get one."""

from __future__ import annotations

import pytest
from alembic import command

from tests.support.migrations import indexes, schema_differences
from webhook_service.database.engine import make_engine
from webhook_service.database.migrate import alembic_config

# Revision: the revision before it, and the indexes it adds (name: table, columns).
MIGRATIONS = {
    "0010": (
        "0009",
        {
            "ix_messages_raw_request_id": ("messages", ["raw_request_id"]),
            "ix_status_events_raw_request_id": ("status_events", ["raw_request_id"]),
        },
    ),
    "0011": (
        "0010",
        {
            "ix_deliveries_completed_at": ("deliveries", ["completed_at"]),
            "ix_delivery_attempts_attempted_at": ("delivery_attempts", ["attempted_at"]),
        },
    ),
    "0012": ("0011", {"ix_request_log_provider_message_ids": ("request_log", ["provider_message_ids"])}),
    "0013": ("0012", {"ix_delivery_attempts_endpoint_id_event_id": ("delivery_attempts", ["endpoint_id", "event_id"])}),
    "0014": ("0013", {"ix_messages_from_number_seq": ("messages", ["from_number", "seq"])}),
}
POSTGRESQL_ONLY = {"0012"}


@pytest.mark.parametrize("revision", sorted(MIGRATIONS))
def test_the_migration_adds_its_indexes_and_takes_them_away(database_url, revision):
    before, added = MIGRATIONS[revision]
    config = alembic_config(database_url)
    engine = make_engine(database_url)
    try:
        command.downgrade(config, before)
        try:
            for name, (table, _columns) in added.items():
                assert name not in indexes(engine, table)
        finally:
            command.upgrade(config, "head")
        engine.dispose()
        for name, (table, columns) in added.items():
            if revision in POSTGRESQL_ONLY and engine.dialect.name != "postgresql":
                assert name not in indexes(engine, table)
            else:
                assert indexes(engine, table)[name] == columns
        with engine.connect() as connection:
            assert schema_differences(connection) == []
    finally:
        engine.dispose()


def test_an_index_a_failed_concurrent_build_left_invalid_is_built_again(_postgres_database):
    """CREATE INDEX CONCURRENTLY that fails (a deadlock, a cancel) leaves the index behind, invalid; IF NOT
    EXISTS alone would then keep it, and the deletions would scan on."""
    config = alembic_config(_postgres_database)
    engine = make_engine(_postgres_database)
    is_valid = "SELECT indisvalid FROM pg_index WHERE indexrelid = 'ix_messages_raw_request_id'::regclass"
    try:
        command.downgrade(config, "0009")
        try:
            with engine.begin() as connection:
                connection.exec_driver_sql("CREATE INDEX ix_messages_raw_request_id ON messages (raw_request_id)")
                connection.exec_driver_sql(
                    "UPDATE pg_index SET indisvalid = false WHERE indexrelid = 'ix_messages_raw_request_id'::regclass"
                )
                assert connection.exec_driver_sql(is_valid).scalar() is False
        finally:
            command.upgrade(config, "head")
        with engine.connect() as connection:
            assert connection.exec_driver_sql(is_valid).scalar() is True
    finally:
        engine.dispose()
