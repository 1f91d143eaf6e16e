"""What the commands that touch the database or the queue start from: the validated settings and a
Runtime with logging configured, and who the audit log says acted. It loads the whole service; how
commands print lives in output.py, which the commands that only read the settings use without it."""

from __future__ import annotations

import getpass
from pathlib import Path

from webhook_service.cli.failures import DatabaseNotReady
from webhook_service.cli.output import plural
from webhook_service.config.model import Settings
from webhook_service.database.engine import database_file
from webhook_service.database.migrate import UnknownRevision, schema_state
from webhook_service.database.outage import shown_url
from webhook_service.observability.logs import configure_logging
from webhook_service.runtime import Runtime
from webhook_service.settings import load_settings


def command_runtime() -> Runtime:
    """For the operator commands (quarantine, attachments, deliveries, prune), which read and change the
    service's data: a database that is not there, or not migrated, is refused in one line before the
    runtime is built, so that a command run from the wrong directory creates nothing (the runtime makes
    the data directory's key, scratch and store directories, and SQLite makes a database file on
    connecting)."""
    settings = load_settings()
    require_migrated_database(settings)
    return service_runtime(settings)


def service_runtime(settings: Settings | None = None) -> Runtime:
    """For the service's own processes and the setup commands, which make what they need (`storage init`
    creates the store before the first start, and may run before `migrate`)."""
    settings = settings or load_settings()
    configure_logging(settings.log_level)
    return Runtime(settings)


def require_migrated_database(settings: Settings) -> None:
    """Raise DatabaseNotReady unless the database exists and is at this version's revision.

    Its revision is read before the command's own queries, rather than their "no such table" (SQLite's
    message) or SQLSTATE 42P01 (PostgreSQL's) caught afterwards: the revision says what is wrong, where a
    missing table only hints at it (a table dropped by hand is not a database never migrated, and a
    database a migration behind fails rather on a missing column, 42703), and a command that
    writes is stopped before its first change, not half-way. It costs one connection more per command."""
    url = settings.effective_database_url
    file = database_file(url)
    if file is not None and not file.exists():
        raise DatabaseNotReady(_no_database_at(file, settings))
    try:
        state = schema_state(url)
    except UnknownRevision as error:
        raise DatabaseNotReady(str(error)) from None
    if state.current is None:
        raise DatabaseNotReady(
            f"the database at {_shown(url)} has not been migrated: run `webhook-service migrate` "
            "(or `webhook-service run`, which migrates as it starts)"
        )
    if state.pending:
        raise DatabaseNotReady(
            f"the database at {_shown(url)} is at revision {state.current} and lacks "
            f"{plural(len(state.pending), 'migration')} ({', '.join(state.pending)}): run `webhook-service migrate`"
        )


def _no_database_at(file: Path, settings: Settings) -> str:
    """Where the settings point, and why that may not be the service's database."""
    if settings.database_url:
        setting, variable, relative = "database_url's path", "DATABASE_URL", not file.is_absolute()
    else:  # the default, in data_dir (made absolute in the URL)
        setting, variable = f"data_dir `{settings.data_dir}`", "DATA_DIR"
        relative = not settings.data_dir.is_absolute()
    if relative:
        why = (
            f"{setting} is relative to the current directory: run this from the service's directory, "
            f"or set {variable} or --config"
        )
    else:
        why = "check DATABASE_URL, DATA_DIR or --config; `webhook-service migrate` creates it"
    return f"there is no database at {file.absolute()} ({why})"


def _shown(url: str) -> str:
    """The database as an operator knows it: its file, or its URL with the password hidden."""
    file = database_file(url)
    return str(file.absolute()) if file is not None else shown_url(url)


def cli_actor() -> str:
    """Who the audit log says acted from the command line."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no user name for this uid (a container)
        return "cli"
