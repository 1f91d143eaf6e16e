"""What every command starts from: the validated settings, and for commands that touch the database or
the queue, a Runtime with logging configured; and how the listing commands print."""

from __future__ import annotations

import getpass
import json
from collections.abc import Callable
from typing import Any

import click

from webhook_service.observability.logs import configure_logging
from webhook_service.runtime import Runtime
from webhook_service.settings import load_settings


def command_runtime() -> Runtime:
    settings = load_settings()
    configure_logging(settings.log_level)
    return Runtime(settings)


def echo_listing(
    rows: list[dict[str, Any]], *, as_json: bool, line: Callable[[dict[str, Any]], str], empty: str
) -> None:
    """Rows as a JSON array (for scripts), or one line each (for people)."""
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        click.echo(line(row))
    if not rows:
        click.echo(empty)


def plural(count: int, singular: str, plural: str | None = None) -> str:
    """ "1 attachment", "2 attachments"."""
    return f"{count} {singular if count == 1 else plural or singular + 's'}"


def cli_actor() -> str:
    """Who the audit log says acted from the command line."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no user name for this uid (a container)
        return "cli"
