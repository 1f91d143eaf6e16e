"""`webhook-service attachments`: downloads that failed or were rejected, listed with their reasons and
retried with a fresh budget (the pipeline's own retry, `AttachmentPipeline.retry`), each retry written to
the audit log."""

from __future__ import annotations

import sys
from typing import Any

import click

from webhook_service.api.read_params import DEFAULT_PAGE, MAX_PAGE
from webhook_service.cli.context import cli_actor, command_runtime
from webhook_service.cli.output import echo_listing, plural
from webhook_service.database.audit import Action, record_actions
from webhook_service.database.tables import ATTACHMENT_STATES
from webhook_service.media.attachments import PROBLEM_STATES, attachment_states, list_attachments, retryable_ids

_RETRY_BATCH = 200


@click.group()
def attachments() -> None:
    """Downloaded media: list failures and rejections, retry them."""


@attachments.command("list")
@click.option("--status", type=click.Choice(ATTACHMENT_STATES), multiple=True, help="Default: failed and rejected.")
@click.option("--reason", help="Only this reason code (e.g. timeout, type_not_allowed).")
@click.option(
    "--limit", type=click.IntRange(1, MAX_PAGE), default=DEFAULT_PAGE, show_default=True, help="How many to list."
)
@click.option("--json", "as_json", is_flag=True)
def attachments_list(status: tuple[str, ...], reason: str | None, limit: int, as_json: bool) -> None:
    """Failed and rejected downloads, with reasons."""
    runtime = command_runtime()
    found = list_attachments(runtime.db, statuses=status or PROBLEM_STATES, reason_code=reason, limit=limit)
    rows = [
        {
            "id": a.id,
            "messageId": a.message_id,
            "provider": a.provider,
            "index": a.index,
            "status": a.status,
            "reasonCode": a.reason_code,
            "reason": a.reason,
            "attempts": a.attempts,
            "declaredContentType": a.declared_content_type,
            "contentType": a.content_type,
            "size": a.size,
            "updatedAt": a.updated_at.isoformat(),
        }
        for a in found
    ]
    echo_listing(rows, as_json=as_json, line=_attachment_line, empty="nothing to show")


@attachments.command("retry")
@click.argument("attachment_ids", nargs=-1)
@click.option("--all-failed", is_flag=True, help="Every failed attachment.")
@click.option("--reason", help="With --all-failed: only this reason code; also selects rejected ones.")
def attachments_retry(attachment_ids: tuple[str, ...], all_failed: bool, reason: str | None) -> None:
    """Put failed/rejected attachments back in the queue with a fresh retry budget. Exits 1 when a named
    attachment does not exist or is not failed or rejected."""
    if not attachment_ids and not all_failed:
        raise click.UsageError("name attachment ids, or use --all-failed")
    if reason and not all_failed:
        raise click.UsageError("--reason selects attachments for --all-failed; named ids are retried as named")
    runtime = command_runtime()
    named = list(dict.fromkeys(attachment_ids))
    states = attachment_states(runtime.db, named)
    refused = 0
    for attachment_id in named:
        state = states.get(attachment_id)
        if state is None:
            click.echo(f"{attachment_id}: no such attachment", err=True)
        elif state not in PROBLEM_STATES:
            click.echo(f"{attachment_id}: {state}, not failed or rejected: nothing to retry", err=True)
        else:
            continue
        refused += 1
    ids = [attachment_id for attachment_id in named if states.get(attachment_id) in PROBLEM_STATES]
    if all_failed:
        chosen = set(ids)
        ids += [
            attachment_id
            for attachment_id in retryable_ids(runtime.db, reason_code=reason)
            if attachment_id not in chosen
        ]
    if not ids:
        selection = f"failed or rejected with reason {reason}" if reason else "failed"
        click.echo("nothing to retry" + (f": no attachment is {selection}" if all_failed else ""))
        sys.exit(1 if refused else 0)
    reset = []
    batches = [ids[start : start + _RETRY_BATCH] for start in range(0, len(ids), _RETRY_BATCH)]
    with click.progressbar(batches, label=f"retrying {plural(len(ids), 'attachment')}", file=sys.stderr) as progress:
        for batch in progress:
            reset += runtime.attachments.retry(batch)
    retried = set(reset)
    record_actions(
        runtime.db,
        [Action(cli_actor(), "retry", "attachment", i, None, "ok" if i in retried else "refused", "") for i in ids],
    )
    # An attachment can leave failed/rejected between the look and the retry (another operator's retry
    # made it pending, or it is stored already): not this command's failure.
    moved = len(ids) - len(reset)
    click.echo(
        f"queued {len(reset)} of {plural(len(ids), 'attachment')} for another attempt"
        + (f" ({moved} no longer failed or rejected)" if moved else "")
    )
    sys.exit(1 if refused else 0)


def _attachment_line(row: dict[str, Any]) -> str:
    if row["reasonCode"]:
        outcome = f"{row['reasonCode']}: {row['reason']}"
    elif row["status"] == "stored":
        outcome = f"{row['contentType']}, {plural(row['size'], 'byte')}"
    else:
        outcome = ""
    return f"{row['id']}  {row['status']:<8}  {row['provider']:<15} attempts={row['attempts']}  {outcome}".rstrip()
