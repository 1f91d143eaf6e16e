"""Migration 0009 (raw requests without their tenant index) on both databases: it downgrades and upgrades
cleanly, the models agree with the migrated schema, and the quarantine keeps its tenant index (the two
tables shared the column's definition)."""

from __future__ import annotations

from alembic import command

from tests.support.migrations import indexes, schema_differences
from webhook_service.database.engine import make_engine
from webhook_service.database.migrate import alembic_config


def test_0009_takes_the_raw_requests_tenant_index_away_and_gives_it_back(database_url):
    config = alembic_config(database_url)
    engine = make_engine(database_url)
    try:
        command.downgrade(config, "0008")
        try:
            assert indexes(engine, "raw_requests")["ix_raw_requests_tenant_id"] == ["tenant_id"]
        finally:
            command.upgrade(config, "head")
        engine.dispose()
        assert "ix_raw_requests_tenant_id" not in indexes(engine, "raw_requests")
        assert indexes(engine, "raw_requests")["ix_raw_requests_received_at"] == ["received_at"]  # pruning's
        assert indexes(engine, "quarantined_requests")["ix_quarantined_requests_tenant_id"] == ["tenant_id"]
        with engine.connect() as connection:
            assert schema_differences(connection) == []
    finally:
        engine.dispose()
