"""Bringing a database's schema up to date with Alembic (revisions in `migrations/versions/`), and telling
where a database stands: its revision, and the revisions it still lacks."""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
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


@contextlib.contextmanager
def sqlite_foreign_keys_off(connection: sa.Connection) -> Iterator[None]:
    """On SQLite, the connection's foreign keys off while migrations run on it (elsewhere, nothing).

    SQLite alters little of a table in place, so a migration rebuilds it (Alembic's batch mode: a copy,
    the old table dropped, the copy renamed). With foreign keys on, dropping the old table first deletes
    its rows, and with them, through `ON DELETE CASCADE`, every row below them: rebuilding `endpoints`
    (migration 0008) deleted every delivery and delivery attempt. SQLite's own procedure for such changes
    turns foreign keys off around the transaction and checks them before it commits
    (`foreign_key_violations`, in the migrations' transaction). The pragma does nothing inside a
    transaction, so it is set on the driver's connection before Alembic begins one."""
    if connection.dialect.name != "sqlite":
        yield
        return
    driver = connection.connection.dbapi_connection
    assert driver is not None  # a connection that is open
    driver.execute("PRAGMA foreign_keys=OFF")
    try:
        yield
    finally:
        driver.execute("PRAGMA foreign_keys=ON")


def foreign_key_violations(connection: sa.Connection) -> Counter[tuple[str, str]]:
    """On SQLite, the rows whose foreign key points at no row, counted by (table, the table it refers
    to); elsewhere none (the database keeps them while it alters tables)."""
    if connection.dialect.name != "sqlite":
        return Counter()
    return Counter(
        (table, parent) for table, _rowid, parent, _key in connection.exec_driver_sql("PRAGMA foreign_key_check")
    )


def require_foreign_keys_hold(connection: sa.Connection, before: Counter[tuple[str, str]]) -> None:
    """Raise, so that the migrations' transaction is rolled back, if they left rows pointing at no row
    beyond those there were `before` them (a database's old breakage does not stop its upgrade)."""
    broken = foreign_key_violations(connection) - before
    if broken:
        found = ", ".join(
            f"{count} row(s) of {table} refer to no row of {parent}" for (table, parent), count in broken.items()
        )
        raise RuntimeError(f"the migration broke foreign keys, and nothing of it is committed: {found}")


def migrate(url: str) -> SchemaState:
    """Bring the schema up to date (idempotent; the run command calls it before starting). Returns the
    state it found, so that a caller can say which revisions it applied."""
    found = schema_state(url)
    if found.pending:
        command.upgrade(alembic_config(url), "head")
    return found
