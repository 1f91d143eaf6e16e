"""`webhook-service prune`: the retention period, applied.

What it deletes, received before the cutoff (`retention_days`, or `--days`, ago): accepted raw requests,
the request log, quarantined requests an operator has resolved (replayed or discarded), and push
deliveries' attempts and finished deliveries. Quarantined requests nobody has reviewed stay, and are
counted, unless `--include-unresolved`. Messages, statuses and attachments are never deleted. Deleting
more than the configuration says (a shorter `--days`, or unreviewed requests) asks first, or needs
`--yes`; within it, it asks nothing, so it can run from cron.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import click

from webhook_service.cli.context import command_runtime
from webhook_service.cli.output import plural
from webhook_service.delivery.history import PrunedDeliveries, prune_history
from webhook_service.intake.retention import Pruned, prune_requests


@click.command()
@click.option(
    "--days",
    type=click.IntRange(min=1),
    help="Delete what was received more than this many days ago (at least 1; default: retention_days).",
)
@click.option(
    "--include-unresolved", is_flag=True, help="Also delete quarantined requests nobody replayed or discarded."
)
@click.option("--dry-run", is_flag=True, help="Count what would be deleted, and delete nothing.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask before deleting more than retention_days says.")
def prune(days: int | None, include_unresolved: bool, dry_run: bool, yes: bool) -> None:
    """Delete accepted raw requests, the request log, resolved (replayed or discarded) quarantined
    requests, and push delivery attempts and finished deliveries, from more than retention_days (or
    --days) ago. Unresolved quarantined requests are kept unless --include-unresolved; messages, statuses,
    attachments and pending deliveries are always kept."""
    runtime = command_runtime()
    retention_days = runtime.settings.retention_days
    days = retention_days if days is None else days
    cutoff = datetime.now(UTC) - timedelta(days=days)
    when = f"received before {cutoff:%Y-%m-%d %H:%M:%S} UTC ({plural(days, 'day')} ago)"
    beyond_configuration = days < retention_days or include_unresolved
    if beyond_configuration and not dry_run and not yes:
        preview = prune_requests(runtime.db, cutoff, include_unresolved=include_unresolved, dry_run=True)
        click.echo(f"would delete {_what(preview, include_unresolved)} {when}")
        # Asked to confirm, the operator sees all it would delete: the delivery history goes with the same cutoff.
        click.echo(_deliveries("would delete", prune_history(runtime.db, cutoff, dry_run=True)))
        why = [f"--days {days} is shorter than retention_days ({retention_days})"] if days < retention_days else []
        why += ["--include-unresolved deletes requests nobody has reviewed"] if include_unresolved else []
        click.echo("; ".join(why))
        try:
            click.confirm("Delete them?", abort=True, err=True)
        except click.Abort:
            raise click.ClickException("nothing deleted: not confirmed (--yes deletes without asking)") from None
    pruned = prune_requests(runtime.db, cutoff, include_unresolved=include_unresolved, dry_run=dry_run)
    click.echo(f"{'would delete' if dry_run else 'deleted'} {_what(pruned, include_unresolved)} {when}")
    if pruned.unresolved_quarantined and not include_unresolved:
        click.echo(
            f"kept {plural(pruned.unresolved_quarantined, 'unresolved quarantined request')} from before then: "
            "review them (quarantine list), or delete them too with --include-unresolved"
        )
    click.echo(
        _deliveries("would delete" if dry_run else "deleted", prune_history(runtime.db, cutoff, dry_run=dry_run))
    )


def _deliveries(verb: str, pruned: PrunedDeliveries) -> str:
    return (
        f"{verb} {plural(pruned.attempts, 'delivery attempt')} and "
        f"{plural(pruned.deliveries, 'finished delivery', 'finished deliveries')} from before then"
    )


def _what(pruned: Pruned, include_unresolved: bool) -> str:
    quarantined = pruned.resolved_quarantined
    label = "resolved quarantined request"
    if include_unresolved:
        quarantined += pruned.unresolved_quarantined
        label = "quarantined request"
    return (
        f"{plural(pruned.raw_requests, 'raw request')}, {plural(pruned.request_log, 'request log entry', 'request log entries')} "
        f"and {plural(quarantined, label)}"
    )
