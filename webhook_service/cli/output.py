"""How the commands print: listings, and counts of things."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import click


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
