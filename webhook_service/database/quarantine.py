"""Reading and resolving quarantine entries (the refused webhook requests the intake keeps in
`quarantined_requests`): the one set of queries the CLI, the intake's replays and the operator console
use. Writing an entry is the intake's job (`intake/quarantine.py`).

`tenants` scopes a query (database/scope.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa

from webhook_service.database.engine import Database
from webhook_service.database.scope import Tenants, visible, within
from webhook_service.database.tables import QuarantinedRequest, storable

RESOLUTIONS = ("replayed", "discarded")
# Reason codes of requests whose body was never read whole (intake/http.py): kept without it.
BODY_TOO_LARGE = "body_too_large"
BODY_INCOMPLETE = "body_incomplete"
UNREAD_BODY_REASONS = frozenset({BODY_TOO_LARGE, BODY_INCOMPLETE})
# How the reason of an entry kept without its body, past the quarantine's budget, begins.
BUDGET_NOTE = "body of {size} bytes not kept: "
_BUDGET_NOTE_PATTERN = re.compile(r"body of \d+ bytes not kept: ")


@dataclass(frozen=True)
class QuarantineFilter:
    include_resolved: bool = False
    provider: str | None = None
    connection: str | None = None
    reason_code: str | None = None
    request_id: str | None = None


def quarantine_entries(
    db: Database,
    *,
    tenants: Tenants = None,
    where: QuarantineFilter = QuarantineFilter(),  # frozen: shared safely
    before: int | None = None,
    limit: int = 50,
) -> list[QuarantinedRequest]:
    """The newest entries first (ids below `before`, for the next page), without their bodies (each may be
    up to `webhook_max_body_bytes`; `body_bytes` says how large)."""
    listed = sa.select(QuarantinedRequest).options(sa.orm.defer(QuarantinedRequest.body, raiseload=True))
    query = _filtered(listed, tenants, where)
    if before is not None:
        query = query.where(QuarantinedRequest.id < before)
    with db.reading() as session:
        return list(session.scalars(query.order_by(QuarantinedRequest.id.desc()).limit(limit)))


def quarantine_ids(db: Database, *, tenants: Tenants, where: QuarantineFilter, limit: int) -> list[int]:
    """The ids of the entries a filter selects, oldest first (for bulk actions)."""
    query = _filtered(sa.select(QuarantinedRequest.id), tenants, where)
    with db.reading() as session:
        return list(session.scalars(query.order_by(QuarantinedRequest.id).limit(limit)))


def count_quarantined(db: Database, *, tenants: Tenants, where: QuarantineFilter) -> int:
    query = _filtered(sa.select(sa.func.count()).select_from(QuarantinedRequest), tenants, where)
    with db.reading() as session:
        return int(session.execute(query).scalar_one())


def quarantine_entry(db: Database, entry_id: int, *, tenants: Tenants = None) -> QuarantinedRequest | None:
    with db.reading() as session:
        entry = session.get(QuarantinedRequest, entry_id)
    if entry is None or not visible(entry.tenant_id, tenants):
        return None
    return entry


def resolve_entry(db: Database, entry_id: int, resolution: str) -> None:
    """Mark an entry replayed or discarded (it stays until `prune`)."""
    with db.transaction() as session:
        session.execute(
            sa.update(QuarantinedRequest)
            .where(QuarantinedRequest.id == entry_id)
            .values(resolved_at=datetime.now(UTC), resolution=resolution)
        )


def body_was_kept(entry: QuarantinedRequest) -> bool:
    """Whether the entry holds the body as it came: not when the request was too large, its body never
    arrived whole, or quarantine was past its budget (an empty body that was sent empty was kept)."""
    if entry.body_bytes:
        return True
    return not (entry.reason_code in UNREAD_BODY_REASONS or _BUDGET_NOTE_PATTERN.match(entry.reason))


def _filtered(query: sa.Select, tenants: Tenants, where: QuarantineFilter) -> sa.Select:
    if tenants is not None:
        query = query.where(within(QuarantinedRequest.tenant_id, tenants))
    if not where.include_resolved:
        query = query.where(QuarantinedRequest.resolved_at.is_(None))
    for value, column in (
        (where.provider, QuarantinedRequest.provider),
        (where.connection, QuarantinedRequest.connection),
        (where.reason_code, QuarantinedRequest.reason_code),
        (where.request_id, QuarantinedRequest.request_id),
    ):
        if value:
            query = query.where(column == storable(value))
    return query
