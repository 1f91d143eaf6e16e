"""`webhook-service prune`: the retention period, applied."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import click

from webhook_service.cli.context import command_runtime
from webhook_service.intake.retention import prune_requests


@click.command()
@click.option("--days", type=int, help="Keep this many days (default: settings.retention_days).")
def prune(days: int | None) -> None:
    """Delete accepted raw requests, quarantined requests and the request log older than the retention
    period. Messages, statuses and attachments are kept."""
    runtime = command_runtime()
    cutoff = datetime.now(UTC) - timedelta(days=days or runtime.settings.retention_days)
    pruned = prune_requests(runtime.db, cutoff)
    click.echo(
        f"deleted {pruned.raw_requests} raw requests, {pruned.quarantined_requests} quarantined requests and "
        f"{pruned.request_log} request log entries older than {cutoff:%Y-%m-%d}"
    )
