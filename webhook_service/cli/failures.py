"""How a command fails for a reason outside it (its configuration, its database, its port, its
directories): one line that names what is wrong and what to do, and an exit code of its own (README,
"Command line"), never a traceback. The group (main.py) turns a bad configuration, a database that cannot
be used and a directory that cannot be written into these for every command (`operator_failure`), and so
do the web's gunicorn processes, which are no click commands, as they start (`exit_on_operator_failure`);
commands raise the others. Any other exception is a bug, and keeps its traceback."""

from __future__ import annotations

import errno
import os
import sys
from pathlib import Path
from typing import IO, Any

import click

from webhook_service.config.model import ConfigError, Settings
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


class DirectoryUnusable(CommandFailure):
    """A directory the service keeps its files in (data_dir, storage.local_dir, an SQLite database's)
    cannot be made or written: a read-only volume, a file where a directory should be, another user's
    directory, a full disk."""

    exit_code = 6


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


def operator_failure(error: Exception) -> click.ClickException | None:
    """The one line for `error` when its reason is outside the code: a configuration the service cannot
    run with, a database it cannot use, a directory it cannot write. None for any other error: a bug,
    whose traceback must be seen."""
    if isinstance(error, ConfigError):
        return ConfigurationFailure(error)
    return database_failure(error) or directory_failure(error)


def exit_on_operator_failure(error: Exception, exit_code: int | None = None) -> None:
    """For the web's processes, which no click group runs: `error`'s one line on stderr and an exit with
    `exit_code` (None: its kind's) when it is an operator failure. Returns for any other error, which the
    caller raises again."""
    failure = operator_failure(error)
    if failure is not None:
        failure.show()
        raise SystemExit(failure.exit_code if exit_code is None else exit_code)


# How the system refuses a place for reasons of the place: not allowed (another user's, a read-only
# volume), a file where a directory must be, no space left. An error that names a path in one of the
# service's directories with one of these is the operator's to fix; any other OSError stays a bug's.
_REFUSED = frozenset({errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.EEXIST, errno.ENOSPC, errno.EDQUOT})


def directory_failure(error: Exception) -> DirectoryUnusable | None:
    """The one line for `error` when the system refused a path in a directory the settings name (the
    innermost of them): the setting, its directory, the path and the reason; None for any other error.
    Like a database's, the error does not say which setting: the settings, read again, do."""
    if not isinstance(error, OSError) or error.errno not in _REFUSED or error.filename is None:
        return None
    path = Path(os.fsdecode(error.filename)).resolve()
    settings = load_settings()
    named = [(setting, directory.resolve()) for setting, directory in _kept_directories(settings)]
    within = [(setting, directory) for setting, directory in named if path == directory or directory in path.parents]
    if not within:
        return None
    setting, directory = max(within, key=lambda found: len(found[1].parts))
    where = "" if path == directory else f"{path}: "
    return DirectoryUnusable(
        f"{setting} {directory} cannot be used ({where}{error.strerror}): it must be a directory the service "
        "can create and write"
    )


def _kept_directories(settings: Settings) -> list[tuple[str, Path]]:
    """Each directory the settings name, with the setting that names it. An SQLite database's only where
    the database's module is loaded (no other can have made it), as in database_failure."""
    kept = [("data_dir", settings.data_dir)]
    if settings.storage.local_dir is not None:
        kept.append(("storage.local_dir", settings.storage.local_dir))
    engine = sys.modules.get("webhook_service.database.engine")
    file = engine.database_file(settings.effective_database_url) if engine is not None else None
    if settings.database_url and file is not None:
        kept.append(("database_url's directory", file.parent))
    return kept
