"""A database the commands cannot use is one line and an exit code of its own, never a traceback: one that
cannot be reached (3); and for the operator commands, one that is not there or not migrated (4), refused
before anything is made, so that a command run from the wrong directory leaves no new data behind."""

from __future__ import annotations

import os

import pytest
import sqlalchemy as sa
from alembic import command
from click.testing import CliRunner, Result

from tests.fixtures.services import POSTGRES_URL, free_port, service_unavailable, url_reachable
from tests.support.migrations import REVISIONS, migrations
from webhook_service.cli.main import cli
from webhook_service.database.migrate import alembic_config

# The commands that read or change the service's data, with arguments that get them to their first query.
OPERATOR_COMMANDS = [
    ("quarantine", "list"),
    ("quarantine", "show", "1"),
    ("quarantine", "replay", "1"),
    ("attachments", "list"),
    ("attachments", "retry", "--all-failed"),
    ("deliveries", "list"),
    ("deliveries", "endpoints"),
    ("prune", "--dry-run"),
]


@pytest.fixture
def webhook_service(tmp_path, monkeypatch):
    """The command line in an empty directory of its own (the current directory), configured by these
    variables alone."""
    monkeypatch.delenv("WEBHOOK_SERVICE_CONFIG", raising=False)
    for variable in ("DATABASE_URL", "DATA_DIR", "REDIS_URL", "HOST", "PORT"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.chdir(tmp_path)

    def invoke(*arguments: str, **variables: str) -> Result:
        for name, value in variables.items():
            monkeypatch.setenv(name, value)
        return CliRunner().invoke(cli, list(arguments), catch_exceptions=False)

    return invoke


# The database cannot be reached ---------------------------------------------------------------------

# `run` fails in its migration, before it starts anything (on a free port: it checks that first).
UNREACHABLE_COMMANDS = [("migrate",), ("run", "--port", "FREE"), *OPERATOR_COMMANDS]


@pytest.mark.parametrize("arguments", UNREACHABLE_COMMANDS, ids=" ".join)
def test_a_database_that_cannot_be_reached_is_one_line_naming_it_without_its_password(
    webhook_service, tmp_path, arguments
):
    arguments = tuple(str(free_port()) if argument == "FREE" else argument for argument in arguments)
    result = webhook_service(*arguments, DATABASE_URL="postgresql://postgres:s3cret@127.0.0.1:1/test")
    assert result.exit_code == 3
    assert result.stdout == ""
    assert result.stderr == (
        "webhook-service: the database could not be reached (postgresql+psycopg://postgres:***@127.0.0.1:1/test): "
        'connection failed: connection to server at "127.0.0.1", port 1 failed: Connection refused\n'
    )
    assert os.listdir(tmp_path) == []  # nothing made on the way


@pytest.mark.parametrize("arguments", [("migrate",), ("quarantine", "list")], ids=" ".join)
def test_an_unknown_host_is_one_line_with_the_drivers_reason(webhook_service, arguments):
    result = webhook_service(*arguments, DATABASE_URL="postgresql://x@no-such-host.invalid/test")
    assert result.exit_code == 3
    assert result.stderr.startswith(
        "webhook-service: the database could not be reached (postgresql+psycopg://x@no-such-host.invalid/test): "
        "failed to resolve host 'no-such-host.invalid'"
    )
    assert result.stderr.count("\n") == 1


@pytest.mark.parametrize("arguments", [("migrate",), ("deliveries", "endpoints")], ids=" ".join)
def test_a_database_the_server_does_not_have_is_one_line(webhook_service, arguments):
    if not url_reachable(POSTGRES_URL, 5432):
        service_unavailable("PostgreSQL", f"nothing listens at {POSTGRES_URL} (set TEST_POSTGRES_URL)")
    missing = sa.engine.make_url(POSTGRES_URL).set(database="wsvc_no_such_database")
    result = webhook_service(*arguments, DATABASE_URL=missing.render_as_string(hide_password=False))
    assert result.exit_code == 3
    assert result.stderr.startswith(
        f"webhook-service: the database could not be reached ({missing.render_as_string()}): connection failed: "
    )
    assert result.stderr.endswith('database "wsvc_no_such_database" does not exist\n')
    assert result.stderr.count("\n") == 1


# The database is not there (embedded SQLite) ----------------------------------------------------------


@pytest.mark.parametrize("arguments", OPERATOR_COMMANDS, ids=" ".join)
def test_an_operator_command_away_from_the_data_makes_none_and_says_where_it_looked(
    webhook_service, tmp_path, arguments
):
    result = webhook_service(*arguments)
    assert result.exit_code == 4
    assert result.stderr == (
        f"webhook-service: there is no database at {tmp_path / 'data' / 'service.db'} (data_dir `data` is "
        "relative to the current directory: run this from the service's directory, or set DATA_DIR or --config)\n"
    )
    assert os.listdir(tmp_path) == []  # no data directory, key, store or database file


def test_a_data_dir_set_to_a_directory_without_the_database_is_named(webhook_service, tmp_path):
    (tmp_path / "elsewhere").mkdir()
    result = webhook_service("quarantine", "list", DATA_DIR=str(tmp_path / "elsewhere"))
    assert result.exit_code == 4
    assert result.stderr == (
        f"webhook-service: there is no database at {tmp_path / 'elsewhere' / 'service.db'} "
        "(check DATABASE_URL, DATA_DIR or --config; `webhook-service migrate` creates it)\n"
    )
    assert os.listdir(tmp_path / "elsewhere") == []


def test_migrate_still_makes_the_database_the_operator_commands_then_use(webhook_service, tmp_path):
    assert webhook_service("migrate").exit_code == 0
    assert (tmp_path / "data" / "service.db").exists()
    listed = webhook_service("quarantine", "list")
    assert listed.exit_code == 0
    assert listed.stdout == "quarantine is empty\n"


# The database has not been migrated --------------------------------------------------------------------


def _shown(url: str) -> str:
    """As the commands name a database: its file, or its URL with the password hidden."""
    parsed = sa.engine.make_url(url)
    return str(parsed.database) if parsed.get_backend_name() == "sqlite" else parsed.render_as_string()


def _connected_once(url: str) -> None:
    """Connect and leave: SQLite makes its (empty) file."""
    engine = sa.create_engine(url)
    engine.connect().close()
    engine.dispose()


@pytest.mark.parametrize("arguments", [("quarantine", "list"), ("prune", "--dry-run")], ids=" ".join)
def test_a_database_never_migrated_names_the_command_that_migrates(webhook_service, empty_database_url, arguments):
    _connected_once(empty_database_url)
    result = webhook_service(*arguments, DATABASE_URL=empty_database_url)
    assert result.exit_code == 4
    assert result.stderr == (
        f"webhook-service: the database at {_shown(empty_database_url)} has not been migrated: "
        "run `webhook-service migrate` (or `webhook-service run`, which migrates as it starts)\n"
    )


def test_a_database_behind_this_version_names_what_it_lacks(webhook_service, empty_database_url):
    command.upgrade(alembic_config(empty_database_url), "0002")
    newer = REVISIONS[REVISIONS.index("0002") + 1 :]
    result = webhook_service("attachments", "list", DATABASE_URL=empty_database_url)
    assert result.exit_code == 4
    assert result.stderr == (
        f"webhook-service: the database at {_shown(empty_database_url)} is at revision 0002 and lacks "
        f"{migrations(newer)} ({', '.join(newer)}): run `webhook-service migrate`\n"
    )


def test_a_database_a_newer_version_migrated_is_refused(webhook_service, empty_database_url):
    command.upgrade(alembic_config(empty_database_url), "head")
    engine = sa.create_engine(empty_database_url)
    with engine.begin() as connection:
        connection.exec_driver_sql("UPDATE alembic_version SET version_num = '0099'")
    engine.dispose()
    result = webhook_service("deliveries", "list", DATABASE_URL=empty_database_url)
    assert result.exit_code == 4
    assert result.stderr == (
        f"webhook-service: the database is at revision 0099, which this version does not have (its newest is "
        f"{REVISIONS[-1]}): a newer version of the service migrated it\n"
    )
