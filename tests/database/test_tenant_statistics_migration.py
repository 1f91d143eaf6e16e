"""Migration 0015 (the planner assumes 100 tenants) on both databases: on PostgreSQL it sets the option and
analyzes a table that has messages, not an empty one; it downgrades cleanly; on SQLite it does nothing.
What it prevents is tests/intake/test_postgres_reports.py's
`test_a_tenant_the_statistics_think_small_is_still_read_by_its_key`."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import command

from tests.fixtures.services import own_postgres_database
from webhook_service.database.engine import make_engine
from webhook_service.database.migrate import alembic_config, migrate


def _tenant_statistics(engine: sa.Engine) -> tuple[list[str], float | None]:
    """The column's n_distinct option, and the count of distinct tenants its statistics hold (None: none
    yet). Only n_distinct: this machine's server keeps an option of its own on every column."""
    with engine.connect() as connection:
        options = connection.exec_driver_sql(
            "SELECT attoptions FROM pg_attribute WHERE attrelid = 'messages'::regclass AND attname = 'tenant_id'"
        ).scalar()
        distinct = connection.exec_driver_sql(
            "SELECT n_distinct FROM pg_stats WHERE tablename = 'messages' AND attname = 'tenant_id'"
            " AND schemaname = current_schema()"
        ).scalar()
    return [option for option in options or [] if option.startswith("n_distinct=")], distinct


def _add_messages_of_many_tenants(engine: sa.Engine) -> None:
    with engine.begin() as connection:
        connection.exec_driver_sql(
            "INSERT INTO messages (id, tenant_id, provider, connection, provider_message_id, direction, to_numbers,"
            " has_content, received_at, updated_at, extra)"
            " SELECT 'm-' || n, 'tenant-' || n, 'standard', 'main', 'm-' || n, 'inbound', '[]', false, now(), now(),"
            " '{}' FROM generate_series(1, 500) AS n"
        )


def test_0015_sets_the_option_and_analyzes_the_messages(database_url):
    config = alembic_config(database_url)
    engine = make_engine(database_url)
    try:
        command.downgrade(config, "0014")
        try:
            if engine.dialect.name == "postgresql":
                assert _tenant_statistics(engine)[0] == []
                _add_messages_of_many_tenants(engine)
                with engine.begin() as connection:
                    connection.exec_driver_sql("ANALYZE messages")
                assert _tenant_statistics(engine) == ([], -1.0)  # as many tenants as messages
        finally:
            command.upgrade(config, "head")
        if engine.dialect.name == "postgresql":
            # Analyzed again by the migration, under the option.
            assert _tenant_statistics(engine) == (["n_distinct=100"], 100.0)
            command.downgrade(config, "0014")
            assert _tenant_statistics(engine)[0] == []
            command.upgrade(config, "head")
    finally:
        engine.dispose()


def test_0015_leaves_a_new_deployments_empty_table_unanalyzed():
    """Statistics of an empty table say empty until autovacuum's next ANALYZE, and a table growing
    meanwhile is read by sequential scans."""
    with own_postgres_database("wsvc_tenant_statistics") as url:
        migrate(url)
        engine = make_engine(url)
        try:
            assert _tenant_statistics(engine) == (["n_distinct=100"], None)
            with engine.connect() as connection:
                # -1: never analyzed (ANALYZE of the empty table would make it 0, "known empty").
                tuples = "SELECT reltuples FROM pg_class WHERE oid = 'messages'::regclass"
                assert connection.exec_driver_sql(tuples).scalar() == -1
        finally:
            engine.dispose()
