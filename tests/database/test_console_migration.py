"""Migration 0004 (request_log, audit_log) on both databases: it downgrades and upgrades cleanly and
leaves the schema exactly as the models describe it."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import command

from tests.support.migrations import schema_differences
from webhook_service.database.engine import make_engine
from webhook_service.database.migrate import alembic_config


def test_0004_downgrades_upgrades_and_matches_the_models(database_url):
    config = alembic_config(database_url)
    engine = make_engine(database_url)
    try:
        command.downgrade(config, "0003")
        try:
            assert not {"request_log", "request_counts", "audit_log"} & set(sa.inspect(engine).get_table_names())
        finally:
            command.upgrade(config, "head")
        inspector = sa.inspect(engine)
        assert {"request_log", "request_counts", "audit_log"} <= set(inspector.get_table_names())
        # 0004's own (later migrations add others: schema_differences holds the whole schema to the models).
        assert {index["name"] for index in inspector.get_indexes("request_log")} >= {
            "ix_request_log_received_at",
            "ix_request_log_request_id",
            "ix_request_log_tenant_id_id",
        }
        with engine.connect() as connection:
            assert schema_differences(connection) == []
    finally:
        engine.dispose()
