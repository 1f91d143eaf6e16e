"""Finding attachments for operators: the failed and rejected ones with their reasons, the ids a bulk
retry takes, and the states of named ones. (Retrying them is the pipeline's job:
`AttachmentPipeline.retry`.)"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from webhook_service.database.engine import Database
from webhook_service.database.tables import Attachment, Message

PROBLEM_STATES = ("failed", "rejected")


@dataclass(frozen=True)
class AttachmentSummary:
    id: str
    message_id: str
    provider: str
    index: int
    status: str
    reason_code: str | None
    reason: str | None
    attempts: int
    declared_content_type: str | None
    # The sniffed type and size of a stored one.
    content_type: str | None
    size: int | None
    updated_at: datetime


def list_attachments(
    db: Database, *, statuses: Sequence[str] = PROBLEM_STATES, reason_code: str | None = None, limit: int = 50
) -> list[AttachmentSummary]:
    """The most recently updated attachments in these states (and with this reason), newest first."""
    query = (
        sa.select(Attachment, Message.id, Message.provider)
        .join(Message)
        .where(Attachment.status.in_(statuses))
        .order_by(Attachment.updated_at.desc())
        .limit(limit)
    )
    if reason_code:
        query = query.where(Attachment.reason_code == reason_code)
    with db.reading() as session:
        return [
            AttachmentSummary(
                id=a.id,
                message_id=message_id,
                provider=provider,
                index=a.index,
                status=a.status,
                reason_code=a.reason_code,
                reason=a.reason,
                attempts=a.attempts,
                declared_content_type=a.declared_content_type,
                content_type=a.content_type,
                size=a.size,
                updated_at=a.updated_at,
            )
            for a, message_id, provider in session.execute(query)
        ]


def retryable_ids(db: Database, *, reason_code: str | None = None) -> list[str]:
    """Every failed attachment; with `reason_code`, every failed or rejected one with that reason."""
    query = sa.select(Attachment.id)
    if reason_code:
        query = query.where(Attachment.status.in_(PROBLEM_STATES), Attachment.reason_code == reason_code)
    else:
        query = query.where(Attachment.status == "failed")
    with db.reading() as session:
        return list(session.scalars(query))


def attachment_states(db: Database, attachment_ids: Sequence[str]) -> dict[str, str]:
    """The status of each of these attachments that exists, by id."""
    if not attachment_ids:
        return {}
    query = sa.select(Attachment.id, Attachment.status).where(Attachment.id.in_(list(attachment_ids)))
    with db.reading() as session:
        return {row.id: row.status for row in session.execute(query)}
