"""What was delivered and how: an endpoint's attempts (GET .../attempts, the console), deliveries (the
CLI's list, the console's endpoint page), what an endpoint has left to deliver (the worker, the console),
and putting deliveries back to pending: a consumer's replay, an operator's retry or resend. All keep the
delivery's webhook-id (one per event and endpoint), so a receiver that deduplicates by it sees a replay
as the event it already has."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from webhook_service.database.engine import Database
from webhook_service.database.pruning import delete_in_batches
from webhook_service.database.tables import DELIVERIES, DELIVERY_ATTEMPTS, DELIVERY_STATES, ENDPOINTS, EVENTS
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


# What an endpoint has left to deliver: its pending deliveries (when the next is due, and the time of the
# first of their events in the feed)... Each from the deliveries' (endpoint_id, status, event_id) index,
# the event by its id. This runs after every delivery turn, and it used to join the pending deliveries
# to the events for the least created_at, which PostgreSQL could plan as a scan of the whole feed (a feed
# that is never pruned): 7.4 ms for an endpoint with 10,000 deliveries waiting among 300,000 events,
# against 1.0 now, and 23-44 ms in plans of the same join with 300,000 to 3,000,000 events where it
# expected thousands of pending rows and found a few dozen.
_IS_PENDING = (DELIVERIES.c.endpoint_id == sa.bindparam("endpoint_id"), DELIVERIES.c.status == "pending")
_PENDING = sa.select(
    sa.select(sa.func.min(DELIVERIES.c.next_attempt_at)).where(*_IS_PENDING).scalar_subquery(),
    sa.select(EVENTS.c.created_at)
    .where(EVENTS.c.id == sa.select(sa.func.min(DELIVERIES.c.event_id)).where(*_IS_PENDING).scalar_subquery())
    .scalar_subquery(),
)
# ...and its tenant's events after its place in the feed, which it has not taken yet.
_FIRST_NEW_EVENT = (
    sa.select(EVENTS.c.created_at)
    .where(EVENTS.c.tenant_id == sa.bindparam("tenant_id"), EVENTS.c.id > sa.bindparam("position"))
    .order_by(EVENTS.c.id)
    .limit(1)
)


@dataclass(frozen=True)
class WorkLeft:
    # When the endpoint's next work is due (None: nothing to do).
    next_due: datetime | None
    # The time of its oldest undelivered event, the first in feed order (what delivery_backlog_age_seconds
    # measures).
    oldest: datetime | None
    # Whether the feed holds events of its tenant that it has not taken yet.
    new_events: bool


def work_left(session: Session, endpoint_id: str, tenant_id: str, position: int) -> WorkLeft:
    """What an endpoint at feed position `position` has left to deliver: after a turn (the worker), on
    the console's pages."""
    due, oldest = session.execute(_PENDING, {"endpoint_id": endpoint_id}).one()
    first_new = session.scalar(_FIRST_NEW_EVENT, {"tenant_id": tenant_id, "position": position})
    if first_new is not None:
        due, oldest = datetime.now(UTC), min(oldest or first_new, first_new)
    return WorkLeft(due, oldest, first_new is not None)


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
    rows = attempt_rows(
        db, endpoint_id, before=before, limit=limit + 1, event_ids=None if event_id is None else [event_id]
    )
    page = rows[:limit]
    return [attempt_json(row) for row in page], (str(page[-1].id) if len(rows) > limit else None)


def attempt_rows(
    db: Database, endpoint_id: str, *, limit: int, before: int | None = None, event_ids: Sequence[int] | None = None
) -> list[Row]:
    """The endpoint's attempts (of these events), newest first: ids below `before`, `limit` of them."""
    query = sa.select(DELIVERY_ATTEMPTS).where(DELIVERY_ATTEMPTS.c.endpoint_id == endpoint_id)
    if before is not None:
        query = query.where(DELIVERY_ATTEMPTS.c.id < before)
    newest_first = DELIVERY_ATTEMPTS.c.id.desc()
    if event_ids is not None:
        query = query.where(DELIVERY_ATTEMPTS.c.event_id.in_(list(event_ids)))
        # Sorted as an expression, so that no index can give the order: SQLite (no statistics) otherwise
        # reads the endpoint's attempts newest first by (endpoint_id, id) to spare the sort, every one of
        # them when the events are old, instead of finding the events' few by (endpoint_id, event_id).
        newest_first = (DELIVERY_ATTEMPTS.c.id + 0).desc()
    with db.reading() as session:
        return list(session.execute(query.order_by(newest_first).limit(limit)))


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
    event_type: str | None = None


def list_deliveries(db: Database, where: DeliveryFilter, limit: int, *, before_event: int | None = None) -> list[Row]:
    """Deliveries, newest event first, with their endpoint's tenant and URL and their event's type.
    `before_event` pages one endpoint's deliveries (it has one per event): those of older events."""
    query = _deliveries(where).order_by(DELIVERIES.c.event_id.desc(), DELIVERIES.c.id.desc()).limit(limit)
    if before_event is not None:
        query = query.where(DELIVERIES.c.event_id < before_event)
    with db.reading() as session:
        return list(session.execute(query))


def endpoint_delivery(db: Database, endpoint_id: str, delivery_id: int) -> Row | None:
    """One of the endpoint's deliveries, as list_deliveries shows it (None: not the endpoint's)."""
    query = _deliveries(DeliveryFilter(endpoint_id=endpoint_id, statuses=DELIVERY_STATES))
    with db.reading() as session:
        return session.execute(query.where(DELIVERIES.c.id == delivery_id)).first()


def _deliveries(where: DeliveryFilter) -> sa.Select:
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
    )
    if where.endpoint_id:
        query = query.where(DELIVERIES.c.endpoint_id == where.endpoint_id)
    if where.tenant_id:
        query = query.where(ENDPOINTS.c.tenant_id == where.tenant_id)
    if where.event_type:
        query = query.where(EVENTS.c.type == where.event_type)
    return query


def failed_ids(db: Database, endpoint_id: str | None = None, *, limit: int | None = None) -> list[int]:
    """Every failed delivery (of one endpoint; the first `limit`), oldest event first: what an operator
    retries at once."""
    query = sa.select(DELIVERIES.c.id).where(DELIVERIES.c.status == "failed").order_by(DELIVERIES.c.event_id)
    if endpoint_id:
        query = query.where(DELIVERIES.c.endpoint_id == endpoint_id)
    if limit is not None:
        query = query.limit(limit)
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


def not_retryable(db: Database, delivery_ids: Sequence[int]) -> dict[int, str]:
    """Why retry_failed would leave each of `delivery_ids` it leaves alone: no such delivery, not failed,
    or its endpoint disabled (an operator who named it is told which)."""
    query = (
        sa.select(DELIVERIES.c.id, DELIVERIES.c.status, ENDPOINTS.c.enabled)
        .join(ENDPOINTS, ENDPOINTS.c.id == DELIVERIES.c.endpoint_id)
        .where(DELIVERIES.c.id.in_(list(delivery_ids)))
    )
    with db.reading() as session:
        found = {row.id: row for row in session.execute(query)}
    reasons = {}
    for delivery_id in delivery_ids:
        row = found.get(delivery_id)
        if row is None:
            reasons[delivery_id] = "no such delivery"
        elif row.status != "failed":
            reasons[delivery_id] = f"{row.status}, not failed: nothing to retry"
        elif not row.enabled:
            reasons[delivery_id] = "its endpoint is disabled: enable it first"
    return reasons


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
