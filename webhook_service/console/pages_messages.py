"""Messages (/console/messages): search, and one message's page with its status timeline (every report,
with why those that did not move the status did not), its attachments (thumbnails, players or
downloads through their signed URLs; the reason and a retry for those that failed or were rejected) and
the requests that brought it. Also the retry of one attachment."""

from __future__ import annotations

from dataclasses import dataclass

from flask import Blueprint, flash, redirect, request, url_for
from werkzeug.wrappers import Response

from webhook_service.console import params
from webhook_service.console.context import Console
from webhook_service.console.rendering import error_page, page
from webhook_service.database.messages import LoadedMessage, MessageFilter, find_message, find_messages
from webhook_service.database.request_log import RequestLogFilter, request_log_entries
from webhook_service.database.tables import Message, StatusEventRow
from webhook_service.media.attachments import PROBLEM_STATES, attachment_in_scope
from webhook_service.model import statuses


@dataclass(frozen=True)
class TimelineStep:
    report: StatusEventRow
    # Why a report kept in the history did not move the message's status; None when it did.
    not_applied_because: str | None


def register(blueprint: Blueprint, console: Console) -> None:
    parts = console.parts
    region = parts.settings.phone_default_region

    @blueprint.get("/messages")
    def messages() -> Response:
        args = request.args
        where = MessageFilter(
            direction=params.choice(args, "direction", ("inbound", "outbound")),
            status=params.choice(args, "status", statuses.CANONICAL),
            provider=params.text(args, "provider"),
            connection=params.text(args, "connection"),
            provider_message_id=params.text(args, "provider_message_id"),
            sender=params.address(args, "from", region),
            recipient=params.address(args, "to", region),
            since=params.moment(args, "since"),
            until=params.moment(args, "until"),
        )
        found = find_messages(
            parts.db,
            tenants=console.operator().tenants,
            where=where,
            before=params.position(args, "before"),
            limit=params.PAGE_SIZE,
        )
        return page(
            "messages.html", messages=found.messages, next_before=found.next_before, statuses=sorted(statuses.CANONICAL)
        )

    @blueprint.get("/messages/<message_id>")
    def message_page(message_id: str) -> Response:
        tenants = console.operator().tenants
        loaded = find_message(parts.db, Message.id == params.row_key(message_id), tenants=tenants)
        if loaded is None:
            return error_page(404, "Not found")
        requests, _ = request_log_entries(
            parts.db,
            tenants=tenants,
            where=RequestLogFilter(
                provider=loaded.message.provider, provider_message_id=loaded.message.provider_message_id
            ),
            limit=20,
        )
        return page(
            "message.html",
            loaded=loaded,
            message=loaded.message,
            timeline=timeline(loaded),
            history_truncated=loaded.history_truncated,
            requests=requests,
            problem_states=PROBLEM_STATES,
        )

    @blueprint.post("/attachments/<attachment_id>/retry")
    def retry_attachment(attachment_id: str) -> Response:
        attachment = attachment_in_scope(parts.db, params.row_key(attachment_id), tenants=console.operator().tenants)
        if attachment is None:
            return error_page(404, "Not found")
        refused = console.refusal("retry", "attachment", attachment.id, attachment.tenant_id)  # viewer, or limit
        if refused is not None:
            return refused
        reset = parts.retry([attachment.id])
        result = "ok" if reset else "refused"
        detail = "queued for another attempt" if reset else f"not retried: it is {attachment.status}"
        console.audit([console.action("retry", "attachment", attachment.id, attachment.tenant_id, result, detail)])
        flash(f"Attachment {attachment.index + 1}: {detail}.", "ok" if reset else "error")
        message = find_message(parts.db, Message.seq == attachment.message_seq, tenants=None)
        target = (
            url_for("console.message_page", message_id=message.message.id)
            if message
            else url_for("console.attachments")
        )
        return redirect(target, 303)


def timeline(loaded: LoadedMessage) -> list[TimelineStep]:
    """The reports in arrival order, each with why it left the status alone when it did (replaying the
    status rule: model/statuses.py)."""
    message = loaded.message
    current = statuses.RECEIVED if message.direction == "inbound" and message.has_content else None
    # With the oldest reports left out, the status before the first one shown is not known: until a shown
    # report sets it, a report kept without moving it is put down to one of those.
    known = not loaded.history_truncated
    steps = []
    for report in loaded.history:
        if report.applied:
            steps.append(TimelineStep(report, None))
            current, known = report.status, True
        elif known:
            steps.append(TimelineStep(report, statuses.why_not_applied(current, report.status)))
        else:
            steps.append(TimelineStep(report, "an earlier report, not shown here, had set the status"))
    return steps
