"""How a command fails for a reason outside it (its configuration, its database, its port): one line that
names what is wrong and what to do, and an exit code of its own (README, "Command line"), never a
traceback. The group (main.py) turns a bad configuration and a database that cannot be used into these
for every command; commands raise the others."""

from __future__ import annotations

import sys
from typing import IO, Any

import click

from webhook_service.config.model import ConfigError
from webhook_service.settings import load_settings


class CommandFailure(click.ClickException):
    """Shown as its one line, `webhook-service: <message>`, on stderr; its exit code is its kind's (below).
    1 stays a command's own refusal (click's), as `quarantine replay` that could not replay everything,
    and 2 what the command was given (click's usage errors; a configuration error)."""

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"webhook-service: {self.message}", file=file, err=True)


class DatabaseUnreachable(CommandFailure):
    """Connecting failed, or the database failed a statement: it may pass by itself (a server down, the
    network), or the URL is wrong."""

    exit_code = 3


class DatabaseNotReady(CommandFailure):
    """No database where the settings point, or one not migrated to this version."""

    exit_code = 4


class CannotListen(CommandFailure):
    """`run`: its host and port cannot be listened on (taken, or not an address of this machine)."""

    exit_code = 5


class ConfigurationFailure(click.ClickException):
    """A ConfigError, shown as the service has always shown one: `configuration error: <problem>`."""

    exit_code = 2

    def __init__(self, error: ConfigError):
        super().__init__(str(error))

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"configuration error: {self.message}", file=file, err=True)


def database_failure(error: Exception) -> DatabaseUnreachable | None:
    """The one line for `error` when it says the database could not be used (connecting to it failed, or
    it failed a statement for a reason of its own, not of ours); None for any other error.

    The database's modules are looked up, not imported: a command that did not load them (`web` and
    `worker`, which only read the settings before they become other processes; `hash-password`) cannot
    have failed on the database, and must not load SQLAlchemy to find that out (it costs them a third of
    a second). The error does not say which database; the settings, read again the same way, do."""
    outage = sys.modules.get("webhook_service.database.outage")
    if outage is None or not isinstance(error, outage.UNAVAILABLE_ERRORS):
        return None
    return DatabaseUnreachable(outage.described(error, load_settings().effective_database_url))
