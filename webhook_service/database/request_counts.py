"""Requests per minute, tenant, provider, connection and outcome: what the console's overview charts.

Counting the request log itself would read every request of the day for each look at the overview (300,000
rows took 5 to 10 s on SQLite, and a day at 100 requests a second is 8.6 million). So each process counts
the rows it writes in memory, and adds its counts to the `request_counts` table a second later, in one
short write that does not wait for the disk and takes each row's lock in the same order in every process.
The hot path pays a dictionary increment; the overview reads a few thousand rows. A process that dies
loses at most its last second of counts; the request log itself is durable.
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from collections import Counter
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from webhook_service.database.engine import Database
from webhook_service.database.outage import UNAVAILABLE_ERRORS
from webhook_service.database.scope import Tenants, within
from webhook_service.database.tables import REQUEST_COUNTS

logger = logging.getLogger("webhook_service.database")

FLUSH_SECONDS = 1.0
# A key: (minute since the epoch, tenant id or "", provider, connection or "", outcome).
Key = tuple[int, str, str, str, str]


class RequestCounts:
    def __init__(self, db: Database, flush_seconds: float = FLUSH_SECONDS):
        self._db = db
        self._flush_seconds = flush_seconds
        self._lock = threading.Lock()
        self._flushing = threading.Lock()
        self._pending: Counter[Key] = Counter()
        self._timer: threading.Timer | None = None
        self._timer_pid = os.getpid()
        insert = postgresql.insert if db.dialect == "postgresql" else sqlite.insert
        statement = insert(REQUEST_COUNTS)
        self._upsert = statement.on_conflict_do_update(
            index_elements=["minute", "tenant_id", "provider", "connection", "outcome"],
            set_={"count": REQUEST_COUNTS.c.count + statement.excluded.count},
        )

    def add(self, entry: Mapping[str, Any], outcome: str | None = None) -> None:
        """Count one request log row (a dict of its columns), written or about to be; `outcome` in place
        of the row's own (so that a caller need not copy the row to change it)."""
        received_at: datetime = entry["received_at"]
        key = (
            int(received_at.timestamp()) // 60,
            entry["tenant_id"] or "",
            entry["provider"],
            entry["connection"] or "",
            outcome or entry["outcome"],
        )
        with self._lock:
            self._pending[key] += 1
            if self._timer_pid != os.getpid():  # forked: the parent's timer thread is not in this process
                self._timer, self._timer_pid = None, os.getpid()
            if self._timer is None:
                self._timer = threading.Timer(self._flush_seconds, self._flush_in_background)
                self._timer.daemon = True
                self._timer.start()

    def close(self) -> None:
        """Write what is pending now, and stop the timer (the process is done with this database)."""
        with self._lock:
            timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()
        self.flush()

    def _flush_in_background(self) -> None:
        try:
            self.flush()
        except Exception as error:  # a timer thread has no caller to raise to: logged, counts dropped
            logger.error("request_counts_not_written", exc_info=error)

    def flush(self) -> None:
        """Write what was counted so far (the timer does it a second after the first count; the overview
        does it before it reads, for its own process's counts)."""
        # One flush at a time: a reader's flush waits until the timer's has written what it took.
        with self._flushing:
            self._flush()

    def _flush(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, Counter()
            self._timer = None
        if not pending:
            return
        rows = [
            {"minute": k[0], "tenant_id": k[1], "provider": k[2], "connection": k[3], "outcome": k[4], "count": n}
            for k, n in sorted(pending.items())  # one order for every process: no deadlock between them
        ]
        try:
            with self._db.writing(durable=False) as connection:
                connection.execute(self._upsert, rows)
        except UNAVAILABLE_ERRORS:
            # (The database layer logs with the standard logger: the JSON formatter names the event.)
            logger.warning("request_counts_unavailable")
            with self._lock:
                self._pending.update(pending)  # kept for the next flush


_COUNTS: weakref.WeakKeyDictionary[Database, RequestCounts] = weakref.WeakKeyDictionary()
_COUNTS_LOCK = threading.Lock()


def request_counts(db: Database) -> RequestCounts:
    """The process's counter for this database (every writer of the request log counts into it)."""
    with _COUNTS_LOCK:
        counts = _COUNTS.get(db)
        if counts is None:
            counts = _COUNTS[db] = RequestCounts(db)
        return counts


def counted(
    db: Database, *, tenants: Tenants, since: datetime, bucket_minutes: int = 1
) -> list[tuple[int, str, str | None, str, int]]:
    """(bucket's first minute, provider, connection, outcome, count) since `since`, in buckets of
    `bucket_minutes` (added up by the database), this process's latest counts included."""
    request_counts(db).flush()
    table = REQUEST_COUNTS
    bucket = (table.c.minute // bucket_minutes).label("bucket")
    query = (
        sa.select(bucket, table.c.provider, table.c.connection, table.c.outcome, sa.func.sum(table.c.count))
        .where(table.c.minute >= int(since.timestamp()) // 60)
        .group_by(bucket, table.c.provider, table.c.connection, table.c.outcome)
    )
    if tenants is not None:
        query = query.where(within(table.c.tenant_id, tenants))
    with db.reading() as session:
        return [
            (int(number) * bucket_minutes, provider, connection or None, outcome, int(count))
            for number, provider, connection, outcome, count in session.execute(query)
        ]


def prune_counts(db: Database, older_than: datetime) -> None:
    """Delete the counts of minutes before `older_than`, an hour of minutes per statement."""
    cutoff = int(older_than.timestamp()) // 60
    with db.reading() as session:
        first = session.execute(sa.select(sa.func.min(REQUEST_COUNTS.c.minute))).scalar()
    while first is not None and first < cutoff:
        upto = min(first + 60, cutoff)
        with db.writing() as connection:
            connection.execute(sa.delete(REQUEST_COUNTS).where(REQUEST_COUNTS.c.minute < upto))
        first = upto
