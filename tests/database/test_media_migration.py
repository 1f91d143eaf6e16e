"""Migration 0002 (media_uploads) on both databases: it downgrades and upgrades cleanly and leaves the
schema exactly as the models describe it."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import command

from tests.support.migrations import schema_differences
from webhook_service.database.engine import make_engine
from webhook_service.database.migrate import alembic_config


def test_0002_downgrades_upgrades_and_matches_the_models(database_url):
    config = alembic_config(database_url)
    engine = make_engine(database_url)
    try:
        command.downgrade(config, "0001")
        try:
            assert "media_uploads" not in sa.inspect(engine).get_table_names()
        finally:
            command.upgrade(config, "head")
        inspector = sa.inspect(engine)
        assert "media_uploads" in inspector.get_table_names()
        assert [index["column_names"] for index in inspector.get_indexes("media_uploads")] == [["tenant_id"]]
        with engine.connect() as connection:
            assert schema_differences(connection) == []
    finally:
        engine.dispose()
