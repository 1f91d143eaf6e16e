"""Alembic environment: migrations run against the URL database.migrate.alembic_config() puts in the config."""

import sqlalchemy as sa
from alembic import context

from webhook_service.database.engine import make_engine
from webhook_service.database.limits import DatabaseLimits
from webhook_service.database.migrate import (
    foreign_key_violations,
    made_on,
    require_foreign_keys_hold,
    sqlite_foreign_keys_off,
)
from webhook_service.database.tables import Base

config = context.config


def run_migrations() -> None:
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("no sqlalchemy.url: run migrations through webhook_service.database.migrate")
    if context.is_offline_mode():
        context.configure(
            url=url,
            target_metadata=Base.metadata,
            literal_binds=True,
            render_as_batch=url.startswith("sqlite"),
            include_object=made_on(sa.engine.make_url(url).get_dialect().name),
        )
        with context.begin_transaction():
            context.run_migrations()
        return
    # No statement limit: a migration may rewrite a large table, and an operator is watching it.
    engine = make_engine(url, DatabaseLimits(statement_timeout=None))
    try:
        with engine.connect() as connection, sqlite_foreign_keys_off(connection):
            context.configure(
                connection=connection,
                target_metadata=Base.metadata,
                # SQLite cannot ALTER most things; batch mode rebuilds tables instead.
                render_as_batch=connection.dialect.name == "sqlite",
                include_object=made_on(connection.dialect.name),
            )
            with context.begin_transaction():
                before = foreign_key_violations(connection)
                context.run_migrations()
                require_foreign_keys_hold(connection, before)
    finally:
        engine.dispose()


run_migrations()
