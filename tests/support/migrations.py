"""The migrations this version has, oldest first, read from the migration scripts themselves, so that
tests of what `migrate` and `check-config --connect` say stay true as migrations are added."""

from __future__ import annotations

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from webhook_service.database.migrate import alembic_config, made_on
from webhook_service.database.tables import Base

REVISIONS: tuple[str, ...] = tuple(
    script.revision
    for script in reversed(list(ScriptDirectory.from_config(alembic_config("sqlite://")).walk_revisions()))
)


def migrations(revisions: tuple[str, ...]) -> str:
    """ "1 migration", "3 migrations", as the commands count them."""
    return f"{len(revisions)} migration{'' if len(revisions) == 1 else 's'}"


def indexes(engine: sa.Engine, table: str) -> dict[str, list[str]]:
    """A table's indexes as the database has them: name -> columns."""
    return {index["name"]: index["column_names"] for index in sa.inspect(engine).get_indexes(table)}


def schema_differences(connection: sa.Connection) -> list:
    """What autogenerate finds between the models and the database's schema ([]: they agree), leaving out
    what the models make only on another database."""
    context = MigrationContext.configure(connection, opts={"include_object": made_on(connection.dialect.name)})
    return compare_metadata(context, Base.metadata)


def empty_every_table(engine: sa.Engine) -> None:
    """Delete every row of the models' tables, children first: a shared test database as a test expects
    to find it. DELETE, not TRUNCATE: on tables this small it is some thirty times faster."""
    with engine.begin() as connection:
        for table in reversed(Base.metadata.sorted_tables):
            connection.execute(table.delete())
