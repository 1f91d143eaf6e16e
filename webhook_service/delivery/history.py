"""What was delivered and how: an endpoint's attempts (GET .../attempts), deliveries (the CLI's list),
and putting deliveries back to pending: a consumer's replay, an operator's retry. Both keep the
delivery's webhook-id (one per event and endpoint), so a receiver that deduplicates by it sees a replay
as the event it already has."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from webhook_service.database.engine import Database
from webhook_service.database.pruning import delete_in_batches
from webhook_service.database.tables import DELIVERIES, DELIVERY_ATTEMPTS, ENDPOINTS, EVENTS
from webhook_service.model.message_json import iso

# Events put back per transaction: a replay of a long period is many short transactions.
REPLAY_BATCH = 1000
Row = Any

_BACK_TO_PENDING = {
    "status": "pending",
    "attempts": 0,
    "next_attempt_at": sa.bindparam("now"),
    "completed_at": None,
    "last_error": None,
    "last_http_status": None,
}


def attempt_json(row: Row) -> dict[str, Any]:
    return {
        "id": str(row.id),
        "eventId": str(row.event_id),
        "attempt": row.attempt,
        "attemptedAt": iso(row.attempted_at),
        "outcome": row.outcome,
        "httpStatus": row.http_status,
        "errorCode": row.error_code,
        "error": row.error,
        "latencyMs": row.latency_ms,
        "responseBody": row.response_body,
    }


def list_attempts(
    db: Database, endpoint_id: str, *, before: int | None, limit: int, event_id: int | None = None
) -> tuple[list[dict[str, Any]], str | None]:
    """The endpoint's attempts, newest first, and the cursor of the next page (None on the last)."""
    query = sa.select(DELIVERY_ATTEMPTS).where(DELIVERY_ATTEMPTS.c.endpoint_id == endpoint_id)
    if before is not None:
        query = query.where(DELIVERY_ATTEMPTS.c.id < before)
    if event_id is not None:
        query = query.where(DELIVERY_ATTEMPTS.c.event_id == event_id)
    query = query.order_by(DELIVERY_ATTEMPTS.c.id.desc()).limit(limit + 1)
    with db.reading() as session:
        rows = list(session.execute(query))
    page = rows[:limit]
    return [attempt_json(row) for row in page], (str(page[-1].id) if len(rows) > limit else None)


def replay(
    db: Database, endpoint: Row, *, upto: int, since: datetime | None = None, event_ids: Sequence[int] = ()
) -> int:
    """Put the endpoint's deliveries of these events (its tenant's, of its types, up to feed id `upto`)
    back to pending, due now, with a fresh retry budget, making those it never had: the events since
    `since`, or those named. Returns how many were put back."""
    conditions = [EVENTS.c.tenant_id == endpoint.tenant_id, EVENTS.c.id <= upto]
    if endpoint.event_types:
        conditions.append(EVENTS.c.type.in_(list(endpoint.event_types)))
    if since is not None:
        conditions.append(EVENTS.c.created_at >= since)
    if event_ids:
        conditions.append(EVENTS.c.id.in_(list(event_ids)))
    insert = (postgresql.insert if db.dialect == "postgresql" else sqlite.insert)(DELIVERIES)
    upsert = insert.on_conflict_do_update(
        index_elements=[DELIVERIES.c.endpoint_id, DELIVERIES.c.event_id],
        set_=_BACK_TO_PENDING | {"next_attempt_at": insert.excluded.next_attempt_at},
    )
    replayed, after = 0, 0
    while True:
        now = datetime.now(UTC)
        with db.writing() as conn:
            ids = list(
                conn.scalars(
                    sa.select(EVENTS.c.id)
                    .where(*conditions, EVENTS.c.id > after)
                    .order_by(EVENTS.c.id)
                    .limit(REPLAY_BATCH)
                )
            )
            if ids:
                conn.execute(
                    upsert,
                    [
                        {
                            "endpoint_id": endpoint.id,
                            "event_id": event_id,
                            "status": "pending",
                            "attempts": 0,
                            "next_attempt_at": now,
                            "created_at": now,
                        }
                        for event_id in ids
                    ],
                )
        replayed += len(ids)
        if len(ids) < REPLAY_BATCH:
            return replayed
        after = ids[-1]


@dataclass(frozen=True)
class DeliveryFilter:
    endpoint_id: str | None = None
    tenant_id: str | None = None
    statuses: tuple[str, ...] = ("failed",)


def list_deliveries(db: Database, where: DeliveryFilter, limit: int) -> list[Row]:
    """Deliveries, newest event first, with their endpoint's tenant and URL and their event's type."""
    query = (
        sa.select(
            DELIVERIES,
            ENDPOINTS.c.tenant_id,
            ENDPOINTS.c.url,
            EVENTS.c.type.label("event_type"),
            EVENTS.c.created_at.label("event_created_at"),
        )
        .join(ENDPOINTS, ENDPOINTS.c.id == DELIVERIES.c.endpoint_id)
        .join(EVENTS, EVENTS.c.id == DELIVERIES.c.event_id)
        .where(DELIVERIES.c.status.in_(where.statuses))
        .order_by(DELIVERIES.c.event_id.desc(), DELIVERIES.c.id.desc())
        .limit(limit)
    )
    if where.endpoint_id:
        query = query.where(DELIVERIES.c.endpoint_id == where.endpoint_id)
    if where.tenant_id:
        query = query.where(ENDPOINTS.c.tenant_id == where.tenant_id)
    with db.reading() as session:
        return list(session.execute(query))


def failed_ids(db: Database, endpoint_id: str | None = None) -> list[int]:
    """Every failed delivery (of one endpoint), oldest event first: what an operator retries at once."""
    query = sa.select(DELIVERIES.c.id).where(DELIVERIES.c.status == "failed").order_by(DELIVERIES.c.event_id)
    if endpoint_id:
        query = query.where(DELIVERIES.c.endpoint_id == endpoint_id)
    with db.reading() as session:
        return list(session.scalars(query))


@dataclass(frozen=True)
class PrunedDeliveries:
    attempts: int
    deliveries: int


def prune_history(db: Database, older_than: datetime, *, dry_run: bool = False) -> PrunedDeliveries:
    """Delete attempts made, and finished deliveries completed, before `older_than` (`webhook-service
    prune`); `dry_run` counts them and deletes nothing. Pending deliveries stay whatever their age; a
    pruned event can still be replayed."""
    old_attempts = (DELIVERY_ATTEMPTS, DELIVERY_ATTEMPTS.c.attempted_at < older_than)
    finished = (DELIVERIES, DELIVERIES.c.status != "pending", DELIVERIES.c.completed_at < older_than)
    if dry_run:
        with db.reading() as session:
            return PrunedDeliveries(
                *(
                    int(session.scalar(sa.select(sa.func.count()).select_from(table).where(*conditions)) or 0)
                    for table, *conditions in (old_attempts, finished)
                )
            )
    return PrunedDeliveries(delete_in_batches(db, *old_attempts), delete_in_batches(db, *finished))


def retry_failed(db: Database, delivery_ids: Sequence[int]) -> list[str]:
    """Put failed deliveries of enabled endpoints back to pending with a fresh retry budget (an operator's
    retry). Returns the endpoint of each delivery put back (the endpoints to wake)."""
    statement = (
        sa.update(DELIVERIES)
        .where(
            DELIVERIES.c.id.in_(list(delivery_ids)),
            DELIVERIES.c.status == "failed",
            DELIVERIES.c.endpoint_id.in_(sa.select(ENDPOINTS.c.id).where(ENDPOINTS.c.enabled.is_(True))),
        )
        .values(_BACK_TO_PENDING)
        .returning(DELIVERIES.c.endpoint_id)
    )
    with db.writing() as conn:
        return list(conn.scalars(statement, {"now": datetime.now(UTC)}))
