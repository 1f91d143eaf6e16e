"""Bringing a database's schema up to date with Alembic (revisions in `migrations/versions/`), and telling
where a database stands: its revision, and the revisions it still lacks."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.script.revision import RevisionError
from alembic.util import CommandError

from webhook_service.database.engine import make_engine

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


class UnknownRevision(Exception):
    """The database is at a revision this version of the service does not have (a newer version
    migrated it): migrating it, or running against it, would be guesswork."""


@dataclass(frozen=True)
class SchemaState:
    current: str | None  # None: no schema yet (an empty database)
    head: str
    # Revisions not applied yet, oldest first.
    pending: tuple[str, ...]


def made_on(dialect: str) -> Callable[..., bool]:
    """Alembic's `include_object` for autogenerate on `dialect`: leaves out the models' objects that are
    made only on another database (`ddl_if(dialect=...)`, as the request log's GIN index), which
    autogenerate would otherwise report missing there."""

    def include(obj: Any, _name: str | None, _type: str, reflected: bool, _compare_to: Any) -> bool:
        made_if = getattr(obj, "_ddl_if", None)  # set by ddl_if(); SQLAlchemy keeps it there
        if reflected or made_if is None or made_if.dialect is None:
            return True
        wanted = made_if.dialect
        return dialect == wanted if isinstance(wanted, str) else dialect in wanted

    return include


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def schema_state(url: str) -> SchemaState:
    """Where the database stands against this version's migrations. Connects (and on SQLite creates an
    empty file where there was none)."""
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            current = MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()
    script = ScriptDirectory.from_config(alembic_config(url))
    head = script.get_current_head()
    assert head is not None  # the package ships its revisions
    try:
        pending = [revision.revision for revision in script.iterate_revisions(head, current)]
    except (CommandError, RevisionError) as error:
        raise UnknownRevision(
            f"the database is at revision {current}, which this version does not have (its newest is {head}): "
            "a newer version of the service migrated it"
        ) from error
    return SchemaState(current=current, head=head, pending=tuple(reversed(pending)))


def migrate(url: str) -> SchemaState:
    """Bring the schema up to date (idempotent; the run command calls it before starting). Returns the
    state it found, so that a caller can say which revisions it applied."""
    found = schema_state(url)
    if found.pending:
        command.upgrade(alembic_config(url), "head")
    return found
