"""database_url: a URL SQLAlchemy can parse, of a database the service supports (SQLite, PostgreSQL
through psycopg), checked with the rest of the configuration rather than by the first command that
connects (a traceback, or `mysql://` passing check-config and then failing `migrate`)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from webhook_service.config.model import ConfigError
from webhook_service.settings import load_settings

FORMS = "sqlite:///FILE or postgresql://USER:PASSWORD@HOST:PORT/DATABASE (or postgres://, postgresql+psycopg://)"


def _problem(url: str) -> str | None:
    try:
        load_settings(environ={"DATABASE_URL": url})
    except ConfigError as error:
        return str(error)
    return None


@pytest.mark.parametrize(
    ("url", "effective"),
    [
        ("sqlite:///data/service.db", "sqlite:///data/service.db"),
        ("sqlite:////var/lib/webhook/service.db", "sqlite:////var/lib/webhook/service.db"),
        ("sqlite+pysqlite:///x.db", "sqlite+pysqlite:///x.db"),
        ("sqlite://", "sqlite://"),
        ("postgresql://u:p@db:5432/x", "postgresql+psycopg://u:p@db:5432/x"),
        ("postgres://u@db/x", "postgresql+psycopg://u@db/x"),
        (
            "postgresql+psycopg://u:p%40ss@[::1]:5432/x?sslmode=require",
            "postgresql+psycopg://u:p%40ss@[::1]:5432/x?sslmode=require",
        ),
        ("postgresql:///x?host=/run/postgresql", "postgresql+psycopg:///x?host=/run/postgresql"),
    ],
)
def test_the_supported_forms_are_accepted(url, effective):
    assert load_settings(environ={"DATABASE_URL": url}).effective_database_url == effective


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("not a url", f"not a database URL: use {FORMS}"),
        ("/var/lib/service.db", f"not a database URL: use {FORMS}"),
        ("mysql://u:p@db/x", f"unsupported database 'mysql://': use {FORMS}"),
        ("postgresql+psycopg2://u@db/x", f"unsupported database 'postgresql+psycopg2://': use {FORMS}"),
        ("redis://127.0.0.1:6379/0", f"unsupported database 'redis://': use {FORMS}"),
        ("postgresql://u:p@db:port/x", f"the port 'port' is not a number: use {FORMS}"),
    ],
)
def test_a_url_the_service_cannot_use_is_one_line_without_the_url(url, problem):
    assert _problem(url) == f"database_url (from the environment variable DATABASE_URL): {problem}"


@pytest.mark.parametrize(
    "url",
    [
        "not a url",
        "postgresql://u:p@db:port/x",
        "postgresql://u:p@db:/x",
        "postgresql://u:pa/ss@db/x",
        "postgresql://u:p@ss@db/x",
        "postgresql://[::1/x",
        "postgresql://db:5432",
        "postgresql://",
        "sqlite:",
        "sqlite:/x.db",
        "sqlite:///",
    ],
)
def test_a_url_is_accepted_exactly_when_sqlalchemy_can_parse_it(url):
    """The settings check the URL without loading SQLAlchemy, with its own pattern: the two agree."""
    try:
        sa.engine.make_url(url)
    except (sa.exc.ArgumentError, ValueError):
        parses = False
    else:
        parses = True
    assert (_problem(url) is None) == parses, _problem(url)
