"""Finding attachments for operators: the failed and rejected ones with their reasons (one by one and
grouped by reason), the ids a bulk retry takes, the states of named ones, and the counts the console's
overview shows. The CLI and the console use these same queries. (Retrying them is the pipeline's job:
`AttachmentPipeline.retry`.)

`tenants` scopes a query (database/scope.py)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from webhook_service.database.engine import Database
from webhook_service.database.scope import Tenants, visible, within
from webhook_service.database.tables import ATTACHMENT_STATES, Attachment, Message

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
    db: Database,
    *,
    statuses: Sequence[str] = PROBLEM_STATES,
    reason_code: str | None = None,
    limit: int = 50,
    tenants: Tenants = None,
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
    if tenants is not None:
        query = query.where(within(Attachment.tenant_id, tenants))
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


def retryable_ids(db: Database, *, reason_code: str | None = None, tenants: Tenants = None) -> list[str]:
    """Every failed attachment; with `reason_code`, every failed or rejected one with that reason."""
    return [attachment_id for attachment_id, _ in retryable(db, reason_code=reason_code, tenants=tenants)]


def retryable(db: Database, *, reason_code: str | None = None, tenants: Tenants = None) -> list[tuple[str, str]]:
    """The same, as (id, tenant id) pairs."""
    query = sa.select(Attachment.id, Attachment.tenant_id)
    if tenants is not None:
        query = query.where(within(Attachment.tenant_id, tenants))
    if reason_code:
        query = query.where(Attachment.status.in_(PROBLEM_STATES), Attachment.reason_code == reason_code)
    else:
        query = query.where(Attachment.status == "failed")
    with db.reading() as session:
        return [(attachment_id, tenant_id) for attachment_id, tenant_id in session.execute(query)]


def attachment_states(db: Database, attachment_ids: Sequence[str]) -> dict[str, str]:
    """The status of each of these attachments that exists, by id."""
    if not attachment_ids:
        return {}
    query = sa.select(Attachment.id, Attachment.status).where(Attachment.id.in_(list(attachment_ids)))
    with db.reading() as session:
        return {row.id: row.status for row in session.execute(query)}


@dataclass(frozen=True)
class ReasonGroup:
    status: str
    reason_code: str | None
    count: int
    latest_at: datetime
    # One of the group's reasons in full (they differ in details such as the URL's host).
    example: str | None


def problem_groups(db: Database, *, tenants: Tenants = None) -> list[ReasonGroup]:
    """Failed and rejected attachments grouped by status and reason code, the largest group first."""
    query = (
        sa.select(
            Attachment.status,
            Attachment.reason_code,
            sa.func.count(),
            sa.func.max(Attachment.updated_at),
            sa.func.max(Attachment.reason),
        )
        .where(Attachment.status.in_(PROBLEM_STATES))
        .group_by(Attachment.status, Attachment.reason_code)
        .order_by(sa.func.count().desc())
    )
    if tenants is not None:
        query = query.where(within(Attachment.tenant_id, tenants))
    with db.reading() as session:
        return [ReasonGroup(*row) for row in session.execute(query)]


@dataclass(frozen=True)
class AttachmentTotals:
    by_status: dict[str, int]  # every state, since the time asked for
    top_reasons: list[tuple[str, str | None, int]]  # (status, reason code, count), rejected and failed
    pending: int  # now, whenever they arrived
    oldest_pending_at: datetime | None


def attachment_totals(db: Database, *, tenants: Tenants, since: datetime, top: int = 5) -> AttachmentTotals:
    """Attachments that arrived since `since` per state, the commonest reasons among the rejected and
    failed ones, and what is still pending with the arrival of the oldest (the queue's backlog)."""
    scope = [within(Attachment.tenant_id, tenants)] if tenants is not None else []
    recent = [Attachment.created_at >= since, *scope]
    with db.reading() as session:
        by_status = dict(
            session.execute(
                sa.select(Attachment.status, sa.func.count()).where(*recent).group_by(Attachment.status)
            ).all()
        )
        reasons = session.execute(
            sa.select(Attachment.status, Attachment.reason_code, sa.func.count())
            .where(Attachment.status.in_(PROBLEM_STATES), *recent)
            .group_by(Attachment.status, Attachment.reason_code)
            .order_by(sa.func.count().desc())
            .limit(top)
        ).all()
        pending, oldest = session.execute(
            sa.select(sa.func.count(), sa.func.min(Attachment.created_at)).where(Attachment.status == "pending", *scope)
        ).one()
    return AttachmentTotals(
        by_status={state: int(by_status.get(state, 0)) for state in ATTACHMENT_STATES},
        top_reasons=[(status, code, int(count)) for status, code, count in reasons],
        pending=int(pending),
        oldest_pending_at=oldest,
    )


def attachment_in_scope(db: Database, attachment_id: str, *, tenants: Tenants) -> Attachment | None:
    with db.reading() as session:
        attachment = session.scalars(sa.select(Attachment).where(Attachment.id == attachment_id)).first()
    return attachment if attachment is not None and visible(attachment.tenant_id, tenants) else None
