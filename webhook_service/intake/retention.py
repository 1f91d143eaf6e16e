"""How long the intake keeps whole requests: accepted raw requests, quarantined ones and the request log
older than the retention period are deleted (`webhook-service prune`); the messages, statuses and
attachments they produced stay."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from webhook_service.database.engine import Database
from webhook_service.database.request_counts import prune_counts
from webhook_service.database.tables import QuarantinedRequest, RawRequest, RequestLogEntry, RequestRecord

# Rows deleted per statement (and transaction): every statement stays well inside the database's
# statement timeout however much has built up, and no transaction holds thousands of row locks.
PRUNE_BATCH = 1000


@dataclass(frozen=True)
class Pruned:
    raw_requests: int
    quarantined_requests: int
    request_log: int


def prune_requests(db: Database, older_than: datetime) -> Pruned:
    return Pruned(
        raw_requests=_delete_older(db, RawRequest, older_than),
        quarantined_requests=_delete_older(db, QuarantinedRequest, older_than),
        request_log=_prune_log(db, older_than),
    )


def _prune_log(db: Database, older_than: datetime) -> int:
    prune_counts(db, older_than)  # what the overview charts of it
    return _delete_older(db, RequestLogEntry, older_than)


def _delete_older(db: Database, table: type[RequestRecord] | type[RequestLogEntry], older_than: datetime) -> int:
    deleted = 0
    while True:
        batch = sa.select(table.id).where(table.received_at < older_than).limit(PRUNE_BATCH).scalar_subquery()
        with db.writing() as connection:
            count = connection.execute(sa.delete(table).where(table.id.in_(batch))).rowcount
        deleted += count
        if count < PRUNE_BATCH:
            return deleted
