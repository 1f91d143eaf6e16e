"""Migration 0016: on PostgreSQL the messages' key becomes (provider_message_id, provider, tenant_id); SQLite
keeps (tenant_id, provider, provider_message_id). Both ways on both databases, the key still refuses a
second message with it, and an upgrade that stopped between the index's build and the swap (the index
there, the old constraint too) completes when run again."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from alembic import command

from tests.support.migrations import schema_differences
from webhook_service.database.engine import make_engine
from webhook_service.database.migrate import alembic_config

OLD = {"uq_messages_tenant_id_provider_provider_message_id": ["tenant_id", "provider", "provider_message_id"]}
NEW = {"uq_messages_provider_message_id_provider_tenant_id": ["provider_message_id", "provider", "tenant_id"]}
MESSAGE = (
    "INSERT INTO messages (id, tenant_id, provider, connection, provider_message_id, direction, to_numbers,"
    " has_content, received_at, updated_at, extra) VALUES (:id, 't', 'twilio', 'main', 'SM1', 'inbound', '[]',"
    " true, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, '{}')"
)


def _keys(engine: sa.Engine) -> dict[str, list[str]]:
    return {
        constraint["name"]: constraint["column_names"]
        for constraint in sa.inspect(engine).get_unique_constraints("messages")
        if constraint["name"] != "uq_messages_id"
    }


def _refuses_a_second_message_with_the_key(engine: sa.Engine) -> None:
    with engine.begin() as connection:
        connection.execute(sa.text(MESSAGE), {"id": "first"})
    with pytest.raises(sa.exc.IntegrityError), engine.begin() as connection:
        connection.execute(sa.text(MESSAGE), {"id": "second"})
    with engine.begin() as connection:
        connection.exec_driver_sql("DELETE FROM messages")


def test_0016_reorders_the_key_on_postgresql_only_both_ways(database_url):
    config = alembic_config(database_url)
    engine = make_engine(database_url)
    postgresql = engine.dialect.name == "postgresql"
    try:
        command.downgrade(config, "0015")
        try:
            engine.dispose()
            assert _keys(engine) == OLD
            _refuses_a_second_message_with_the_key(engine)
        finally:
            command.upgrade(config, "head")
        engine.dispose()
        assert _keys(engine) == (NEW if postgresql else OLD)
        _refuses_a_second_message_with_the_key(engine)
        with engine.connect() as connection:
            assert schema_differences(connection) == []
    finally:
        engine.dispose()


def test_an_upgrade_stopped_after_the_indexs_build_completes_when_run_again(_postgres_database):
    config = alembic_config(_postgres_database)
    engine = make_engine(_postgres_database)
    try:
        command.downgrade(config, "0015")
        try:
            with engine.begin() as connection:  # what the build leaves before the swap
                [(name, columns)] = NEW.items()
                connection.exec_driver_sql(f"CREATE UNIQUE INDEX {name} ON messages ({', '.join(columns)})")
        finally:
            command.upgrade(config, "head")
        engine.dispose()
        assert _keys(engine) == NEW
        with engine.connect() as connection:
            assert schema_differences(connection) == []
    finally:
        engine.dispose()
