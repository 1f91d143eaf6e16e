"""Migration 0006 (attachments by arrival) on both databases: it downgrades and upgrades cleanly (that the
models and the migrated schema agree is checked with the other migrations, by compare_metadata)."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import command

from webhook_service.database.engine import make_engine
from webhook_service.database.migrate import alembic_config


def _indexes(engine: sa.Engine) -> dict[str, list[str]]:
    return {index["name"]: index["column_names"] for index in sa.inspect(engine).get_indexes("attachments")}


def test_0006_adds_the_index_and_takes_it_away(database_url):
    config = alembic_config(database_url)
    engine = make_engine(database_url)
    try:
        command.downgrade(config, "0005")
        try:
            assert "ix_attachments_created_at" not in _indexes(engine)
        finally:
            command.upgrade(config, "head")
        assert _indexes(engine)["ix_attachments_created_at"] == ["created_at", "status"]
    finally:
        engine.dispose()
