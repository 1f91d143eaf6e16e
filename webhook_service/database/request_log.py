"""Reading the request log (`request_log`, one row per webhook request; the intake writes it, see
intake/request_log.py): filtered pages, one entry with the request it keeps and the feed events it
produced, and counts per outcome over time for the console's overview (kept per minute as the rows are
written: database/request_counts.py).

`tenants` scopes a query (database/scope.py); rows of no tenant (requests to URLs no connection
answers) are seen only by those who see every tenant.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from webhook_service.database.engine import Database
from webhook_service.database.messages import json_list_contains
from webhook_service.database.request_counts import counted
from webhook_service.database.scope import Tenants, visible, within
from webhook_service.database.tables import FeedEvent, QuarantinedRequest, RawRequest, RequestLogEntry, storable

OUTCOMES = (
    "accepted",
    "duplicate",
    "unauthorized",
    "bad_request",
    "too_large",
    "not_found",
    "unavailable",
    "adapter_error",
    # Acknowledged from the spool during a database outage, then kept in quarantine instead of stored
    # (its connection was removed, it no longer parses).
    "quarantined",
)


@dataclass(frozen=True)
class RequestLogFilter:
    provider: str | None = None
    connection: str | None = None
    outcome: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    request_id: str | None = None
    provider_message_id: str | None = None
    # A sender or recipient, as stored (E.164 for phone numbers: normalize first).
    address: str | None = None


def request_log_entries(
    db: Database, *, tenants: Tenants, where: RequestLogFilter, before: int | None = None, limit: int = 50
) -> tuple[list[RequestLogEntry], int | None]:
    """The newest entries first, and the `before` of the next page (None on the last)."""
    query = _filtered(sa.select(RequestLogEntry), tenants, where, db.dialect)
    if before is not None:
        query = query.where(RequestLogEntry.id < before)
    with db.reading() as session:
        rows = list(session.scalars(query.order_by(RequestLogEntry.id.desc()).limit(limit + 1)))
    page = rows[:limit]
    return page, (page[-1].id if len(rows) > limit else None)


def request_log_entry(db: Database, entry_id: int, *, tenants: Tenants) -> RequestLogEntry | None:
    with db.reading() as session:
        entry = session.get(RequestLogEntry, entry_id)
    return entry if entry is not None and visible(entry.tenant_id, tenants) else None


def kept_request(db: Database, entry: RequestLogEntry) -> RawRequest | QuarantinedRequest | None:
    """The whole request an entry links to (its raw request, or its quarantine entry), while it is kept."""
    with db.reading() as session:
        if entry.raw_request_id is not None:
            return session.get(RawRequest, entry.raw_request_id)
        if entry.quarantine_id is not None:
            return session.get(QuarantinedRequest, entry.quarantine_id)
    return None


def produced_events(db: Database, entry: RequestLogEntry) -> list[FeedEvent]:
    """The feed events an accepted request added: its messages' events stamped with its arrival time (the
    message store stamps everything a request writes with that time)."""
    if entry.outcome != "accepted" or not entry.message_ids:
        return []
    query = (
        sa.select(FeedEvent)
        .where(FeedEvent.message_id.in_(entry.message_ids), FeedEvent.created_at == entry.received_at)
        .order_by(FeedEvent.id)
    )
    with db.reading() as session:
        return list(session.scalars(query))


def log_entry_for_request_id(db: Database, request_id: str, *, tenants: Tenants) -> RequestLogEntry | None:
    where = RequestLogFilter(request_id=request_id)
    entries, _ = request_log_entries(db, tenants=tenants, where=where, limit=1)
    return entries[0] if entries else None


@dataclass(frozen=True)
class OutcomeCount:
    bucket: int  # the bucket's start, in seconds since the epoch
    provider: str
    connection: str | None
    outcome: str
    count: int


def outcome_counts(db: Database, *, tenants: Tenants, since: datetime, bucket_seconds: int) -> list[OutcomeCount]:
    """Requests per time bucket, provider, connection and outcome since `since` (from the counts kept per
    minute, database/request_counts.py)."""
    totals: Counter[tuple[int, str, str | None, str]] = Counter()
    counts = counted(db, tenants=tenants, since=since, bucket_minutes=max(1, bucket_seconds // 60))
    for minute, provider, connection, outcome, count in counts:
        bucket = minute * 60 // bucket_seconds * bucket_seconds
        totals[bucket, provider, connection, outcome] += count
    return [OutcomeCount(*key, count) for key, count in totals.items()]


def _filtered(query: sa.Select, tenants: Tenants, where: RequestLogFilter, dialect: str) -> sa.Select:
    if tenants is not None:
        query = query.where(within(RequestLogEntry.tenant_id, tenants))
    for value, column in (
        (where.provider, RequestLogEntry.provider),
        (where.connection, RequestLogEntry.connection),
        (where.outcome, RequestLogEntry.outcome),
        (where.request_id, RequestLogEntry.request_id),
    ):
        if value is not None:
            query = query.where(column == storable(value))
    if where.provider_message_id is not None:
        query = query.where(
            json_list_contains(RequestLogEntry.provider_message_ids, storable(where.provider_message_id), dialect)
        )
    if where.address is not None:
        query = query.where(json_list_contains(RequestLogEntry.addresses, storable(where.address), dialect))
    if where.since:
        query = query.where(RequestLogEntry.received_at >= where.since)
    if where.until:
        query = query.where(RequestLogEntry.received_at < where.until)
    return query
