"""Migration 0005 (push delivery) on both databases: it downgrades and upgrades cleanly and leaves the
schema exactly as the models describe it."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import command

from tests.support.migrations import schema_differences
from webhook_service.database.engine import make_engine
from webhook_service.database.migrate import alembic_config

DELIVERY_TABLES = {"endpoints", "deliveries", "delivery_attempts"}


def test_0005_downgrades_upgrades_and_matches_the_models(database_url):
    config = alembic_config(database_url)
    engine = make_engine(database_url)
    try:
        command.downgrade(config, "0004")
        try:
            assert not DELIVERY_TABLES & set(sa.inspect(engine).get_table_names())
        finally:
            command.upgrade(config, "head")
        inspector = sa.inspect(engine)
        assert set(inspector.get_table_names()) >= DELIVERY_TABLES
        indexes = {index["name"]: index["column_names"] for index in inspector.get_indexes("deliveries")}
        assert indexes["ix_deliveries_endpoint_status_event"] == ["endpoint_id", "status", "event_id"]
        with engine.connect() as connection:
            assert schema_differences(connection) == []
    finally:
        engine.dispose()
