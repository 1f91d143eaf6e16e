"""How long the intake keeps whole requests: accepted raw requests and quarantined ones older than the
retention period are deleted (`webhook-service prune`); the messages, statuses and attachments they
produced stay."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from webhook_service.database.engine import Database
from webhook_service.database.pruning import delete_in_batches
from webhook_service.database.tables import QUARANTINED_REQUESTS, RAW_REQUESTS


@dataclass(frozen=True)
class Pruned:
    raw_requests: int
    quarantined_requests: int


def prune_requests(db: Database, older_than: datetime) -> Pruned:
    return Pruned(
        raw_requests=delete_in_batches(db, RAW_REQUESTS, RAW_REQUESTS.c.received_at < older_than),
        quarantined_requests=delete_in_batches(
            db, QUARANTINED_REQUESTS, QUARANTINED_REQUESTS.c.received_at < older_than
        ),
    )
