"""`webhook-service check-config`: the configuration validated and summarized (no secrets), every problem
in it named, environment variables that look meant for the service but are not read pointed out, and
with `--connect` whether the database, the blob store and the queue can be used."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import NoReturn

import click

from storage import StorageError, StorageUnavailable
from webhook_service.cli.output import plural
from webhook_service.config.model import ConfigError, Settings
from webhook_service.config.sources import unread_variables
from webhook_service.database.engine import database_file
from webhook_service.database.migrate import schema_state
from webhook_service.database.outage import driver_error, first_line, shown_url
from webhook_service.runtime import Runtime, problems_found_at_start
from webhook_service.settings import checked_settings


class _NotReady(Exception):
    """A dependency answers but the service could not run on it as it is."""


@click.command("check-config")
@click.option("--connect", is_flag=True, help="Also connect to the database, the blob store and the queue.")
def check_config(connect: bool) -> None:
    """Validate the configuration and summarize it (no secrets). Exits 2 when it is invalid; with
    --connect, 1 when the database, blob store or queue cannot be used as configured."""
    for warning in unread_variables():
        click.echo(f"warning: {warning}", err=True)
    try:
        checked = checked_settings()
    except ConfigError as error:  # it cannot be read at all (not TOML, a variable "env:" names is unset)
        _refuse(error.problems)
    # What the service checks only as it starts (a declared endpoint URL the delivery rules refuse, media
    # and storage settings that do not fit together), found here too: while the schema refuses some
    # sections or list items, in the others (checked_settings keeps those valid on their own).
    problems = checked.problems + problems_found_at_start(checked.settings, checked.places)
    if problems:
        _refuse(problems)
    _summarize(checked.settings)
    if connect:
        sys.exit(0 if _connect(checked.settings) else 1)


def _refuse(problems: list[str]) -> NoReturn:
    for problem in problems:
        click.echo(f"configuration error: {problem}", err=True)
    sys.exit(2)


def _summarize(settings: Settings) -> None:
    click.echo(f"environment: {settings.environment}")
    click.echo(f"database: {shown_url(settings.effective_database_url)}")
    queue = f"Redis, queue {settings.queue.name!r}" if settings.redis_url else "SQLite (embedded)"
    click.echo(f"queue: {queue}; storage: {settings.storage.backend}")
    click.echo(
        f"tenants: {len(settings.tenants)}, API users: {len(settings.api_users)}, API keys: {len(settings.api_keys)}, "
        f"console operators: {len(settings.operators)}"
    )
    for connection in settings.connections:
        checks = [
            name
            for name, present in (("signature", connection.secrets), ("basic auth", connection.basic_auth))
            if present
        ]
        state = ", ".join(checks) if connection.verify else "UNSIGNED (development)"
        click.echo(f"  /webhooks/{connection.provider}/{connection.name}  tenant={connection.tenant}  [{state}]")


def _connect(settings: Settings) -> bool:
    """Each dependency tried in turn, one line each; True when all can be used."""
    runtime = Runtime(settings)
    checks: list[tuple[str, Callable[[], str]]] = [
        ("database", lambda: _check_database(settings)),
        ("blob store", lambda: _check_blob_store(runtime)),
        ("queue", lambda: _check_queue(runtime)),
    ]
    usable = True
    try:
        for name, check in checks:
            try:
                click.echo(f"check {name}: ok, {check()}")
            except Exception as error:  # noqa: BLE001  # a preflight reports every failure rather than stopping at one
                usable = False
                click.echo(f"check {name}: FAILED, {_reason(error)}")
    finally:
        runtime.close()
    return usable


def _check_database(settings: Settings) -> str:
    file = database_file(settings.effective_database_url)
    if file is not None and not file.exists():
        # Connecting would create an empty file, and a check should change nothing.
        raise _NotReady(f"no database file at {file} yet: run `webhook-service migrate`")
    state = schema_state(settings.effective_database_url)
    if state.current is None:
        raise _NotReady("reachable, but it has no schema yet: run `webhook-service migrate`")
    if state.pending:
        raise _NotReady(
            f"reachable, schema at revision {state.current} lacks {plural(len(state.pending), 'migration')} "
            f"({', '.join(state.pending)}): run `webhook-service migrate`"
        )
    return f"reachable, schema up to date (revision {state.current})"


def _check_blob_store(runtime: Runtime) -> str:
    store = runtime.blob_store
    try:
        store.check()
    except StorageError as error:
        if isinstance(error, StorageUnavailable) or store.backend == "local":
            raise
        raise _NotReady(f"{error} (`webhook-service storage init` creates it)") from error
    return f"{store.backend} store can be used"


def _check_queue(runtime: Runtime) -> str:
    runtime.queue.ping()
    return f"{'Redis' if runtime.settings.redis_url else 'embedded'} queue answers"


def _reason(error: Exception) -> str:
    if isinstance(error, _NotReady):
        return str(error)
    cause = driver_error(error)
    return f"{type(cause).__name__}: {first_line(cause)}"
