"""The commands' fixtures: `run("prune", "--days", "7")` invokes the real click command configured like
the test app (`settings`), so the command and the app share one database; `empty_database_url` is a
database no migration has touched, on SQLite and on PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from click.testing import CliRunner, Result

from tests.fixtures.services import own_postgres_database
from webhook_service.cli.main import cli


def environment_for(settings) -> dict[str, str]:
    """The settings as WEBHOOK__<KEY> variables, the configuration's own environment mechanism."""
    return {
        f"WEBHOOK__{key.upper()}": json.dumps(value)
        for key, value in settings.model_dump(mode="json", exclude_none=True).items()
    }


@pytest.fixture
def run(settings, monkeypatch):
    monkeypatch.delenv("WEBHOOK_SERVICE_CONFIG", raising=False)
    for variable, value in environment_for(settings).items():
        monkeypatch.setenv(variable, value)

    def invoke(*arguments: str, input: str | None = None) -> Result:
        return CliRunner().invoke(cli, list(arguments), input=input, catch_exceptions=False)

    return invoke


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_database_url(request, tmp_path) -> Iterator[str]:
    """SQLite's: a file not made yet (connecting makes it)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.db'}"
        return
    with own_postgres_database("wsvc_migrate") as url:
        yield url
