"""How long the intake keeps whole requests (`webhook-service prune`): accepted raw requests, the
request log, and quarantined requests an operator has resolved (replayed or discarded), received before
the cutoff, are deleted; the messages, statuses and attachments they produced stay. Quarantined requests
nobody has reviewed yet are kept, and counted, unless the operator asks for them to go too."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import cast

import sqlalchemy as sa

from webhook_service.database.engine import Database
from webhook_service.database.pruning import delete_in_batches
from webhook_service.database.request_counts import prune_counts
from webhook_service.database.tables import QuarantinedRequest, RawRequest, RequestLogEntry, RequestRecord

RetainedTable = type[RequestRecord] | type[RequestLogEntry]


@dataclass(frozen=True)
class Pruned:
    """What a prune deleted (or, in a dry run, would delete) and what it left."""

    raw_requests: int
    resolved_quarantined: int
    # Deleted with `include_unresolved`; otherwise the ones past the cutoff that were kept.
    unresolved_quarantined: int
    request_log: int


def prune_requests(
    db: Database, older_than: datetime, *, include_unresolved: bool = False, dry_run: bool = False
) -> Pruned:
    """Delete raw requests and resolved quarantine entries received before `older_than`, and the
    unresolved entries too with `include_unresolved`. `dry_run` counts them and deletes nothing."""
    apply = _count_older if dry_run else _delete_older
    return Pruned(
        raw_requests=apply(db, RawRequest, older_than, sa.true()),
        resolved_quarantined=apply(db, QuarantinedRequest, older_than, QuarantinedRequest.resolved_at.is_not(None)),
        unresolved_quarantined=(apply if include_unresolved else _count_older)(
            db, QuarantinedRequest, older_than, QuarantinedRequest.resolved_at.is_(None)
        ),
        request_log=_count_older(db, RequestLogEntry, older_than, sa.true()) if dry_run else _prune_log(db, older_than),
    )


def _prune_log(db: Database, older_than: datetime) -> int:
    prune_counts(db, older_than)  # what the overview charts of it
    return _delete_older(db, RequestLogEntry, older_than, sa.true())


def _count_older(db: Database, table: RetainedTable, older_than: datetime, condition: sa.ColumnElement) -> int:
    query = sa.select(sa.func.count()).select_from(table).where(table.received_at < older_than, condition)
    with db.reading() as session:
        return int(session.execute(query).scalar_one())


def _delete_older(db: Database, table: RetainedTable, older_than: datetime, condition: sa.ColumnElement) -> int:
    # Both are mapped classes (RequestRecord is a mixin the type checker cannot see mapped).
    mapped = cast(sa.Table, sa.inspect(table).local_table)
    return delete_in_batches(db, mapped, table.received_at < older_than, condition)
