"""The audit log: what operators did (replay, discard, retry, resend, enable, sign in and out), who, when,
and the result. Written by the console for every action, one row per thing acted on; kept (not pruned)."""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from webhook_service.database.engine import Database
from webhook_service.database.scope import Tenants, within
from webhook_service.database.tables import AuditEntry, storable


@dataclass(frozen=True)
class Action:
    actor: str
    action: str  # replay | replay_trusted | discard | retry | retry_failed | resend | enable | sign_in | sign_out
    target_type: str  # quarantine | attachment | delivery | endpoint | session
    target_id: str | None
    tenant_id: str | None
    result: str  # ok | refused | failed | not_found
    detail: str = ""


def record_actions(db: Database, actions: list[Action]) -> None:
    if not actions:
        return
    with db.transaction() as session:
        session.add_all(
            AuditEntry(
                actor=storable(a.actor[:255]),
                action=a.action,
                target_type=a.target_type,
                target_id=a.target_id,
                tenant_id=a.tenant_id,
                result=a.result,
                detail=storable(a.detail[:2000]),
            )
            for a in actions
        )


def audit_entries(
    db: Database, *, tenants: Tenants, before: int | None = None, limit: int = 50
) -> tuple[list[AuditEntry], int | None]:
    """The newest first; an operator of some tenants sees the actions on those tenants' objects."""
    query = sa.select(AuditEntry)
    if tenants is not None:
        query = query.where(within(AuditEntry.tenant_id, tenants))
    if before is not None:
        query = query.where(AuditEntry.id < before)
    with db.reading() as session:
        rows = list(session.scalars(query.order_by(AuditEntry.id.desc()).limit(limit + 1)))
    page = rows[:limit]
    return page, (page[-1].id if len(rows) > limit else None)
