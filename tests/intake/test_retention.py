"""`prune` deletes in batches, so that every statement stays inside the database's statement timeout
however much has built up."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from tests.support.standard import inbound_body, post_standard
from webhook_service.database import pruning
from webhook_service.database.tables import Message, RawRequest
from webhook_service.intake.retention import Pruned, prune_requests


def test_prune_deletes_everything_old_in_batches(client, runtime, monkeypatch):
    for number in range(5):
        assert post_standard(client, inbound_body(f"old-{number}")).status_code == 200
    monkeypatch.setattr(pruning, "PRUNE_BATCH", 2)
    assert prune_requests(runtime.db, datetime.now(UTC) - timedelta(days=1)) == Pruned(0, 0, 0, 0)
    assert prune_requests(runtime.db, datetime.now(UTC) + timedelta(seconds=1)) == Pruned(5, 0, 0, 5)
    with runtime.db.reading() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(RawRequest)) == 0
        assert session.scalar(sa.select(sa.func.count()).select_from(Message)) == 5
