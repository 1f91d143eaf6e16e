"""Webhooks stored in one group-commit batch on SQLite (intake/message_store.py): in the batch's first run
a webhook's raw request and messages take claimed ids and go in with the other webhooks' at the end of the
batch, one statement per table, and so do the status reports of messages the batch finds new. What that
run cannot store as assumed (a message there already, the same message twice in the batch, the same
report twice, a message filled in after a report the batch put off) makes the batch run again, each
webhook on its own: the outcome is the same as one at a time, nothing lost, nothing twice."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest
import sqlalchemy as sa

from tests.support.group_commit import store_events, stored_rows
from tests.support.standard import inbound_body, post_standard, status_body
from webhook_service.database.engine import Database
from webhook_service.database.tables import FeedEvent, Message, RawRequest, RequestLogEntry, StatusEventRow
from webhook_service.model.events import MessageEvent, StatusEvent

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def _in_one_batch(client, runtime, bodies: list[bytes | Callable[[], int]]) -> tuple[list[int], list[str]]:
    """Post the bodies while another process holds SQLite's writer turn, so that the group commit takes
    them all in one batch, in their order (each is queued before the next is sent); their answers'
    statuses, and the SQL run meanwhile. Instead of a body, a function that sends a webhook and returns
    its answer's status."""
    statements: list[str] = []

    def trace(connection: sa.Connection) -> None:
        connection.connection.dbapi_connection.set_trace_callback(statements.append)

    sa.event.listen(runtime.db.engine, "begin", trace)
    queue = runtime.db.group_commit._queue
    other_process = Database(runtime.db.url)
    answers: dict[int, int] = {}

    def send(index: int, body: bytes | Callable[[], int]) -> None:
        answers[index] = post_standard(client, body).status_code if isinstance(body, bytes) else body()

    threads = [threading.Thread(target=send, args=(index, body)) for index, body in enumerate(bodies)]
    try:
        with other_process.write_turn():
            for sent, thread in enumerate(threads, start=1):
                thread.start()
                deadline = time.monotonic() + 10
                while len(queue) < sent:
                    assert time.monotonic() < deadline, f"{len(queue)} of {sent} queued"
                    time.sleep(0.002)
        for thread in threads:
            thread.join(timeout=10)
    finally:
        other_process.dispose()
        sa.event.remove(runtime.db.engine, "begin", trace)
    return [answers[index] for index in range(len(bodies))], statements


def _inserts(statements: list[str], table: str) -> int:
    return sum(statement.startswith(f"INSERT INTO {table} ") for statement in statements)


def test_new_messages_of_a_batch_go_in_one_statement_per_table(client, runtime):
    bodies = [inbound_body(f"m-batch-{n}", text=f"text {n}") for n in range(5)]
    statuses, statements = _in_one_batch(client, runtime, bodies)
    assert statuses == [200] * 5
    assert {_inserts(statements, table) for table in ("raw_requests", "messages", "request_log", "events")} == {1}
    messages = stored_rows(runtime, Message)
    raw_requests = {raw.id: raw for raw in stored_rows(runtime, RawRequest)}
    assert sorted(m.provider_message_id for m in messages) == [f"m-batch-{n}" for n in range(5)]
    assert len({m.seq for m in messages}) == 5
    for message in messages:
        assert raw_requests[message.raw_request_id].body == bodies[int(message.provider_message_id[-1])]
    log = stored_rows(runtime, RequestLogEntry)
    assert sorted(entry.outcome for entry in log) == ["accepted"] * 5
    assert {entry.raw_request_id for entry in log} == set(raw_requests)
    assert len(stored_rows(runtime, FeedEvent)) == 5


def test_a_message_stored_before_sends_the_batch_to_store_each_on_its_own(client, runtime):
    assert post_standard(client, inbound_body("m-old")).status_code == 200
    bodies = [inbound_body("m-new-1"), inbound_body("m-old"), inbound_body("m-new-2")]
    statuses, statements = _in_one_batch(client, runtime, bodies)
    assert statuses == [200] * 3
    assert any(statement.startswith("SAVEPOINT") for statement in statements)  # the second run
    assert sorted(m.provider_message_id for m in stored_rows(runtime, Message)) == ["m-new-1", "m-new-2", "m-old"]
    assert len(stored_rows(runtime, RawRequest)) == 3  # a duplicate keeps none
    assert len(stored_rows(runtime, FeedEvent)) == 3
    assert sorted(entry.outcome for entry in stored_rows(runtime, RequestLogEntry)) == ["accepted"] * 3 + ["duplicate"]


def test_the_same_message_twice_in_one_batch_is_stored_once(client, runtime):
    body = inbound_body("m-twice")
    statuses, _ = _in_one_batch(client, runtime, [body, inbound_body("m-other"), body])
    assert statuses == [200] * 3
    assert sorted(m.provider_message_id for m in stored_rows(runtime, Message)) == ["m-other", "m-twice"]
    assert len(stored_rows(runtime, FeedEvent)) == 2
    assert sorted(entry.outcome for entry in stored_rows(runtime, RequestLogEntry)) == [
        "accepted",
        "accepted",
        "duplicate",
    ]


def test_a_status_report_beside_new_messages_in_one_batch(client, runtime):
    bodies = [inbound_body("m-in-1"), status_body("m-out", "delivered"), inbound_body("m-in-2")]
    statuses, _ = _in_one_batch(client, runtime, bodies)
    assert statuses == [200] * 3
    messages = {m.provider_message_id: m for m in stored_rows(runtime, Message)}
    assert set(messages) == {"m-in-1", "m-in-2", "m-out"}
    assert messages["m-out"].status == "delivered" and not messages["m-out"].has_content
    assert len({m.seq for m in messages.values()}) == 3
    assert len(stored_rows(runtime, StatusEventRow)) == 1
    assert len(stored_rows(runtime, RawRequest)) == 3
    assert sorted(entry.outcome for entry in stored_rows(runtime, RequestLogEntry)) == ["accepted"] * 3


def test_first_reports_of_a_batch_go_in_one_statement_and_update_nothing(client, runtime):
    bodies = [status_body(f"m-out-{n}", "sent", occurred_at=f"2026-12-06T10:00:0{n}Z") for n in range(4)]
    statuses, statements = _in_one_batch(client, runtime, bodies)
    assert statuses == [200] * 4
    assert _inserts(statements, "status_events") == 1
    assert not any(statement.startswith("UPDATE messages") for statement in statements)
    assert not any(statement.startswith("SAVEPOINT") for statement in statements)
    messages = {m.provider_message_id: m for m in stored_rows(runtime, Message)}
    reports = {r.message_seq: r for r in stored_rows(runtime, StatusEventRow)}
    for n in range(4):
        message = messages[f"m-out-{n}"]
        assert (message.status, message.provider_status, message.has_content) == ("sent", "sent", False)
        assert message.status_updated_at.isoformat() == f"2026-12-06T10:00:0{n}+00:00"
        assert reports[message.seq].applied and reports[message.seq].raw_request_id == message.raw_request_id
    events = stored_rows(runtime, FeedEvent)
    assert sorted(e.data["messageId"] for e in events) == sorted(m.id for m in messages.values())
    assert {(e.data["applied"], e.data["currentStatus"]) for e in events} == {(True, "sent")}
    log = stored_rows(runtime, RequestLogEntry)
    assert sorted(entry.message_ids[0] for entry in log) == sorted(m.id for m in messages.values())


def test_the_same_first_report_twice_in_one_batch_is_stored_once(client, runtime):
    def report() -> int:  # a provider's retry: the same webhook id
        return post_standard(client, status_body("m-retried", "sent"), webhook_id="msg_report_retried").status_code

    statuses, statements = _in_one_batch(client, runtime, [report, status_body("m-other", "sent"), report])
    assert statuses == [200] * 3
    assert any(statement.startswith("SAVEPOINT") for statement in statements)  # the second run
    assert sorted(m.provider_message_id for m in stored_rows(runtime, Message)) == ["m-other", "m-retried"]
    assert len(stored_rows(runtime, StatusEventRow)) == 2
    assert len(stored_rows(runtime, FeedEvent)) == 2
    outcomes = sorted(entry.outcome for entry in stored_rows(runtime, RequestLogEntry))
    assert outcomes == ["accepted", "accepted", "duplicate"]


def test_a_first_report_and_later_ones_of_its_message_in_one_batch(client, runtime):
    bodies = [
        status_body("m-out", "sent", occurred_at="2026-12-06T10:00:00Z"),
        status_body("m-out", "delivered", occurred_at="2026-12-06T10:00:02Z"),
        status_body("m-out", "queued", occurred_at="2026-12-06T09:59:59Z"),  # late: moves nothing on
    ]
    statuses, _ = _in_one_batch(client, runtime, bodies)
    assert statuses == [200] * 3
    (message,) = stored_rows(runtime, Message)
    assert message.status == "delivered"
    reports = {r.status: r.applied for r in stored_rows(runtime, StatusEventRow)}
    assert reports == {"sent": True, "delivered": True, "queued": False}
    current = sorted((e.data["status"], e.data["currentStatus"]) for e in stored_rows(runtime, FeedEvent))
    assert current == [("delivered", "delivered"), ("queued", "delivered"), ("sent", "sent")]


def test_an_inbound_message_after_its_report_in_one_batch_shows_the_report(client, runtime):
    def message_beside_a_report() -> int:  # as a provider that batches events sends: not put off whole
        events = [
            MessageEvent("m-in", "inbound", "+15550001111", ("+15551234567",), "hi"),
            StatusEvent("m-z", "sent", "sent"),
        ]
        store_events(runtime, events, "message-beside-a-report")
        return 200

    bodies = [status_body("m-in", "read", occurred_at="2026-12-06T10:00:00Z"), message_beside_a_report]
    statuses, statements = _in_one_batch(client, runtime, bodies)
    assert statuses == [200] * 2
    assert any(statement.startswith("SAVEPOINT") for statement in statements)  # the second run
    message = next(m for m in stored_rows(runtime, Message) if m.provider_message_id == "m-in")
    assert (message.text, message.has_content, message.status) == ("hi", True, "read")
    (received,) = [e for e in stored_rows(runtime, FeedEvent) if e.type == "message.received"]
    assert [entry["status"] for entry in received.data["statusHistory"]] == ["read"]
