"""`webhook-service attachments`: downloads that failed or were rejected, listed with their reasons and
retried with a fresh budget (the pipeline's own retry, `AttachmentPipeline.retry`), each retry written to
the audit log."""

from __future__ import annotations

import sys
from typing import Any

import click

from webhook_service.cli.context import cli_actor, command_runtime, echo_listing
from webhook_service.database.audit import Action, record_actions
from webhook_service.database.tables import ATTACHMENT_STATES
from webhook_service.media.attachments import PROBLEM_STATES, list_attachments, retryable_ids

_RETRY_BATCH = 200


@click.group()
def attachments() -> None:
    """Downloaded media: list failures and rejections, retry them."""


@attachments.command("list")
@click.option("--status", type=click.Choice(ATTACHMENT_STATES), multiple=True, help="Default: failed and rejected.")
@click.option("--reason", help="Only this reason code (e.g. timeout, type_not_allowed).")
@click.option("--limit", type=int, default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def attachments_list(status: tuple[str, ...], reason: str | None, limit: int, as_json: bool) -> None:
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
    """Put failed/rejected attachments back in the queue with a fresh retry budget."""
    runtime = command_runtime()
    ids = list(attachment_ids)
    if all_failed:
        ids += retryable_ids(runtime.db, reason_code=reason)
    if not ids:
        raise click.UsageError("name attachment ids, or use --all-failed")
    reset = []
    batches = [ids[start : start + _RETRY_BATCH] for start in range(0, len(ids), _RETRY_BATCH)]
    with click.progressbar(batches, label=f"retrying {len(ids)} attachments", file=sys.stderr) as progress:
        for batch in progress:
            reset += runtime.attachments.retry(batch)
    retried = set(reset)
    record_actions(
        runtime.db,
        [Action(cli_actor(), "retry", "attachment", i, None, "ok" if i in retried else "refused", "") for i in ids],
    )
    click.echo(
        f"queued {len(reset)} of {len(ids)} for another attempt"
        + ("" if len(reset) == len(ids) else " (the others are not failed or rejected)")
    )


def _attachment_line(row: dict[str, Any]) -> str:
    return (
        f"{row['id']}  {row['status']:<8}  {row['provider']:<15} attempts={row['attempts']}  "
        f"{row['reasonCode']}: {row['reason']}"
    )
