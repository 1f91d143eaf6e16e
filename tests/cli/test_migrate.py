"""`webhook-service migrate` says what it did: the revisions it applied to an empty or older database,
nothing when it is up to date, and a clear refusal for a database a newer version migrated."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from alembic import command
from click.testing import CliRunner, Result

from tests.support.migrations import REVISIONS, migrations
from webhook_service.cli.main import cli
from webhook_service.database.migrate import alembic_config

HEAD = REVISIONS[-1]


@pytest.fixture
def migrate_command(empty_database_url, tmp_path, monkeypatch):
    monkeypatch.delenv("WEBHOOK_SERVICE_CONFIG", raising=False)
    monkeypatch.setenv("DATABASE_URL", empty_database_url)
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "data"))

    def invoke() -> Result:
        return CliRunner().invoke(cli, ["migrate"], catch_exceptions=False)

    return invoke


def test_an_empty_database_is_told_what_was_applied(migrate_command):
    # It used to say "database is up to date" after applying every migration.
    first = migrate_command()
    assert first.exit_code == 0
    assert first.output == (
        f"applied {migrations(REVISIONS)} to an empty database ({', '.join(REVISIONS)}): database now at revision {HEAD}\n"
    )
    again = migrate_command()
    assert again.exit_code == 0
    assert again.output == f"database is up to date (revision {HEAD}); nothing applied\n"


def test_an_older_database_is_told_which_revisions_it_got(migrate_command, empty_database_url):
    command.upgrade(alembic_config(empty_database_url), "0002")
    result = migrate_command()
    assert result.exit_code == 0
    newer = REVISIONS[REVISIONS.index("0002") + 1 :]
    assert result.output == (
        f"applied {migrations(newer)} from revision 0002 ({', '.join(newer)}): database now at revision {HEAD}\n"
    )


def test_a_database_migrated_by_a_newer_version_is_refused_and_left_alone(migrate_command, empty_database_url):
    command.upgrade(alembic_config(empty_database_url), "head")
    engine = sa.create_engine(empty_database_url)
    with engine.begin() as connection:
        connection.exec_driver_sql("UPDATE alembic_version SET version_num = '0099'")
    result = migrate_command()
    assert result.exit_code == 1
    assert result.output == (
        f"Error: the database is at revision 0099, which this version does not have (its newest is {HEAD}): "
        "a newer version of the service migrated it\n"
    )
    with engine.connect() as connection:
        assert connection.exec_driver_sql("SELECT version_num FROM alembic_version").scalar_one() == "0099"
    engine.dispose()
