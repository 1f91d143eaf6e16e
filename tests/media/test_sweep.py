"""The sweep, which enqueues again what a lost enqueue, a dead worker or a restart left pending: after an
outage it must take the whole backlog, not a fixed number a minute, in batches, within a time budget,
without enqueueing twice what already waits in the queue."""

from __future__ import annotations

import os
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from tests.fixtures.app import TENANT_A
from webhook_service.database.tables import ATTACHMENTS, LEASES, MESSAGES, new_id
from webhook_service.media import pipeline
from webhook_service.media.pipeline import SWEEP_BATCH
from webhook_service.runtime import Runtime

AN_HOUR_AGO = datetime.now(UTC) - timedelta(hours=1)


def pending_attachments(runtime: Runtime, count: int, *, due: datetime = AN_HOUR_AGO, **columns) -> list[str]:
    """`count` attachments of one message, pending since `due` (bulk-inserted: the sweep only reads rows)."""
    now = datetime.now(UTC)
    with runtime.db.writing() as connection:
        seq = connection.execute(
            sa.insert(MESSAGES)
            .values(
                id=new_id(),
                tenant_id=TENANT_A,
                provider="standard",
                connection="main",
                provider_message_id=uuid.uuid4().hex,
                direction="inbound",
                to_numbers=[],
                has_content=True,
                received_at=due,
                updated_at=now,
                extra={},
            )
            .returning(MESSAGES.c.seq)
        ).scalar_one()
        rows = [
            {
                "id": new_id(),
                "message_seq": seq,
                "tenant_id": TENANT_A,
                "index": index,
                "source_url": f"https://media.test/{index}",
                "status": "pending",
                "attempts": 0,
                "next_attempt_at": due,
                "created_at": due,
                "updated_at": now,
                **columns,
            }
            for index in range(count)
        ]
        connection.execute(sa.insert(ATTACHMENTS), rows)
    return [row["id"] for row in rows]


def flat(calls: list[list[str]]) -> list[str]:
    return [attachment_id for call in calls for attachment_id in call]


@pytest.fixture
def enqueued(runtime) -> list[list[str]]:
    """Each enqueue call's ids, in order, instead of the queue (nothing consumes it here)."""
    calls: list[list[str]] = []
    runtime.queue.enqueue = lambda ids, eta=None: calls.append(list(ids))
    return calls


def test_one_run_enqueues_the_whole_backlog_in_batches(runtime, enqueued):
    backlog = pending_attachments(runtime, 2 * SWEEP_BATCH + 7)
    assert runtime.attachments.sweep() == len(backlog)
    assert sorted(flat(enqueued)) == sorted(backlog), "each once"
    assert [len(batch) for batch in enqueued] == [SWEEP_BATCH, SWEEP_BATCH, 7]


def test_what_is_not_overdue_claimed_or_finished_is_left_alone(runtime, enqueued):
    overdue = pending_attachments(runtime, 3)
    pending_attachments(runtime, 2, due=datetime.now(UTC))  # due now: its own enqueue is still on its way
    pending_attachments(runtime, 2, claimed_until=datetime.now(UTC) + timedelta(minutes=5))  # being worked on
    pending_attachments(runtime, 2, status="stored")
    assert runtime.attachments.sweep() == 3
    assert sorted(flat(enqueued)) == sorted(overdue)


def test_what_a_run_enqueued_is_not_enqueued_again_while_it_waits_in_the_queue(runtime, enqueued):
    backlog = pending_attachments(runtime, SWEEP_BATCH + 1)
    assert runtime.attachments.sweep() == len(backlog)
    assert runtime.attachments.sweep() == 0
    # ...until it has waited sweep_after_seconds without being claimed: then that enqueue was lost too.
    with runtime.db.writing() as connection:
        connection.execute(sa.update(ATTACHMENTS).values(next_attempt_at=AN_HOUR_AGO))
    assert runtime.attachments.sweep() == len(backlog)
    assert Counter(flat(enqueued)) == dict.fromkeys(backlog, 2)


def test_a_queue_that_already_holds_a_batch_is_not_added_to(runtime, enqueued):
    backlog = pending_attachments(runtime, 10)
    assert runtime.attachments.sweep(queued=SWEEP_BATCH) == 0
    assert enqueued == []
    assert runtime.attachments.sweep(queued=SWEEP_BATCH - 1) == len(backlog)


def test_a_run_stops_at_its_time_budget_and_the_next_one_goes_on(runtime, enqueued, monkeypatch):
    monkeypatch.setattr(pipeline, "SWEEP_TIME_BUDGET_SECONDS", 0.0)  # one batch, then the budget is spent
    backlog = pending_attachments(runtime, 2 * SWEEP_BATCH + 7)
    assert [runtime.attachments.sweep() for _ in range(4)] == [SWEEP_BATCH, SWEEP_BATCH, 7, 0]
    assert sorted(flat(enqueued)) == sorted(backlog)


def test_the_queues_minutely_task_tells_the_sweep_how_much_already_waits(runtime, caplog):
    caplog.set_level("INFO", logger="webhook_service.media")
    backlog = pending_attachments(runtime, 5)
    queue = runtime.queue
    queue.enqueue([str(uuid.uuid4()) for _ in range(SWEEP_BATCH)])  # the workers have plenty to do
    queue.sweep.call_local()
    assert queue.huey.pending_count() == SWEEP_BATCH
    [deferred] = [record for record in caplog.records if record.getMessage() == "sweep_deferred"]
    assert deferred.fields["queued"] == SWEEP_BATCH
    queue.huey.flush()
    next_minute(runtime)
    queue.sweep.call_local()
    assert queue.huey.pending_count() == len(backlog)
    [swept] = [record for record in caplog.records if record.getMessage() == "sweep_enqueued"]
    assert (swept.fields["attachments"], swept.fields["queued"], swept.fields["stopped"]) == (5, 0, "done")


def next_minute(runtime: Runtime) -> None:
    """As if the sweep's lease had run its term (a minute later)."""
    with runtime.db.writing() as connection:
        connection.execute(sa.update(LEASES).values(expires_at=AN_HOUR_AGO))


def test_of_two_workers_minutely_tasks_one_sweeps(runtime, settings, caplog):
    # Two `worker` commands (or two hosts) each schedule the sweep every minute; one runs it.
    caplog.set_level("DEBUG", logger="webhook_service")
    backlog = pending_attachments(runtime, 3)
    other = Runtime(settings)
    try:
        runtime.queue.sweep.call_local()
        other.queue.sweep.call_local()
        swept = [record for record in caplog.records if record.getMessage() == "sweep_enqueued"]
        [skipped] = [record for record in caplog.records if record.getMessage() == "sweep_skipped"]
        assert [record.fields["attachments"] for record in swept] == [len(backlog)]
        assert skipped.fields["lease_holder"].endswith(f":{os.getpid()}")
        # The next minute, whichever comes first sweeps (here the other one), and only it.
        next_minute(runtime)
        with runtime.db.writing() as connection:
            connection.execute(sa.update(ATTACHMENTS).values(next_attempt_at=AN_HOUR_AGO))
        other.queue.sweep.call_local()
        runtime.queue.sweep.call_local()
        swept = [record for record in caplog.records if record.getMessage() == "sweep_enqueued"]
        assert len(swept) == 2
        assert len([record for record in caplog.records if record.getMessage() == "sweep_skipped"]) == 2
    finally:
        other.close()
