"""Driving the group commit (database/engine.py) from tests: several webhooks in one batch, and the rows
they left."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

import sqlalchemy as sa

from tests.support.standard import post_standard
from webhook_service.intake import request_log
from webhook_service.intake.message_store import RawRequestRecord, StoreResult, store_webhook
from webhook_service.model.events import Event


def in_one_batch(client, runtime, bodies: list[bytes], *, webhook_ids: dict[int, str] | None = None) -> list[int]:
    """Post the bodies at once while the group commit's leader is held up in a batch of its own, so
    that the next batch takes them all; their answers' statuses. `webhook_ids`: the Standard Webhooks id
    to send the body at an index with (a retry's), instead of a new one."""
    group_commit = runtime.db.group_commit
    held, release = threading.Event(), threading.Event()

    def hold(_connection: sa.Connection) -> None:
        held.set()
        assert release.wait(10)

    holder = threading.Thread(target=group_commit.run, args=(hold,))
    holder.start()
    assert held.wait(10)
    answers: dict[int, int] = {}

    def send(index: int, body: bytes) -> None:
        answers[index] = post_standard(client, body, webhook_id=(webhook_ids or {}).get(index)).status_code

    threads = [threading.Thread(target=send, args=(index, body)) for index, body in enumerate(bodies)]
    try:
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 10
        while len(group_commit._queue) < len(bodies):
            assert time.monotonic() < deadline, f"{len(group_commit._queue)} of {len(bodies)} queued"
            time.sleep(0.005)
    finally:
        release.set()
        holder.join(timeout=10)
        for thread in threads:
            thread.join(timeout=10)
    return [answers[index] for index in range(len(bodies))]


def stored_rows(runtime, entity) -> list:
    """Every row of `entity`'s table."""
    with runtime.db.reading() as session:
        return list(session.scalars(sa.select(entity)))


def batch_sizes(monkeypatch, module, name: str) -> list[int]:
    """How many webhooks each call of a batch's one-statement insert (`module.name`, which message_store
    calls) was given, in the order of the calls."""
    from webhook_service.intake import message_store

    sizes: list[int] = []
    insert = getattr(module, name)

    def counted(connection, webhooks):
        sizes.append(len(webhooks))
        return insert(connection, webhooks)

    monkeypatch.setattr(module, name, counted)
    monkeypatch.setattr(message_store, name, counted)
    return sizes


def store_events(runtime, events: list[Event], request_id: str) -> StoreResult:
    """A webhook of these events (as a provider that batches them sends), stored through the message store
    on the "main" Standard Webhooks connection as the intake stores it, with its request log row."""
    connection = runtime.connections.find("standard", "main")
    raw = RawRequestRecord(request_id, "POST", "http://test/webhooks/standard/main", [], b"{}", None, datetime.now(UTC))
    entry = request_log.entry(
        raw,
        provider=connection.provider,
        connection=connection.name,
        tenant_id=connection.tenant,
        outcome="accepted",
        http_status=200,
    )
    return store_webhook(runtime.db, connection, raw, list(events), "US", entry)
