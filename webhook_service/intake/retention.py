"""How long the intake keeps whole requests: accepted raw requests and quarantined ones older than the
retention period are deleted (`webhook-service prune`); the messages, statuses and attachments they
produced stay."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from webhook_service.database.engine import Database
from webhook_service.database.tables import QuarantinedRequest, RawRequest


@dataclass(frozen=True)
class Pruned:
    raw_requests: int
    quarantined_requests: int


def prune_requests(db: Database, older_than: datetime) -> Pruned:
    with db.writing() as connection:
        raw = connection.execute(sa.delete(RawRequest).where(RawRequest.received_at < older_than)).rowcount
        quarantined = connection.execute(
            sa.delete(QuarantinedRequest).where(QuarantinedRequest.received_at < older_than)
        ).rowcount
    return Pruned(raw_requests=raw, quarantined_requests=quarantined)
