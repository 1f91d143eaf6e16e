"""The canonical JSON shapes consumers read (camelCase, as the seeds use)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from webhook_service.model.file_names import attachment_file_name

# A message, attachment or status report with its table's columns as attributes: an ORM object when read
# back, a Core row in the worker, a namespace while the intake builds the feed snapshot of its own insert.
Row = Any
# Signs a stored attachment's URL at read time (URLs expire, so they are never stored).
AttachmentUrl = Callable[[Row], "str | None"]


def iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def file_name(attachment: Row) -> str:
    """The name consumers save the attachment under (model/file_names.py): never null, never a path."""
    return attachment_file_name(
        name=attachment.name, url=attachment.source_url, index=attachment.index, content_type=attachment.content_type
    )


def attachment_json(attachment: Row, url: AttachmentUrl | None = None) -> dict[str, Any]:
    return {
        "id": attachment.id,
        "index": attachment.index,
        "name": file_name(attachment),
        "declaredContentType": attachment.declared_content_type,
        "contentType": attachment.content_type,
        "size": attachment.size,
        "sha256": attachment.sha256,
        "status": attachment.status,
        "reasonCode": attachment.reason_code,
        "reason": attachment.reason,
        "attempts": attachment.attempts,
        "url": url(attachment) if url and attachment.status == "stored" else None,
    }


def status_json(row: Row) -> dict[str, Any]:
    return {
        "status": row.status,
        "providerStatus": row.provider_status,
        "errorCode": row.error_code,
        "errorMessage": row.error_message,
        "occurredAt": iso(row.occurred_at),
        "receivedAt": iso(row.received_at),
        "applied": row.applied,
    }


def message_json(
    message: Row,
    attachments: list[Row],
    history: list[Row],
    url: AttachmentUrl | None = None,
    *,
    history_truncated: bool = False,
) -> dict[str, Any]:
    """`history`: the newest reports, oldest first; `history_truncated` when older ones were left out
    (database/messages.py, STATUS_HISTORY_SHOWN)."""
    return {
        "id": message.id,
        "provider": message.provider,
        "connection": message.connection,
        "tenantId": message.tenant_id,
        "providerMessageId": message.provider_message_id,
        "direction": message.direction,
        "from": message.from_number,
        "to": list(message.to_numbers or []),
        "text": message.text,
        "subject": message.subject,
        "status": message.status,
        "providerStatus": message.provider_status,
        "statusUpdatedAt": iso(message.status_updated_at),
        "occurredAt": iso(message.occurred_at),
        "receivedAt": iso(message.received_at),
        # False while the message is known only from delivery reports.
        "hasContent": message.has_content,
        # Provider facts not mapped above (e.g. Vonage's concatenation fields, segment counts).
        "extra": dict(message.extra or {}),
        "attachments": [attachment_json(a, url) for a in attachments],
        "statusHistory": [status_json(row) for row in history],
        "statusHistoryTruncated": history_truncated,
    }
