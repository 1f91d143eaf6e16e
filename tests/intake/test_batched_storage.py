"""Webhooks stored in one group-commit batch on SQLite (intake/message_store.py): in the batch's first run
a webhook's raw request and messages take claimed ids and go in with the other webhooks' at the end of the
batch, one statement per table. What that run cannot store as assumed (a message there already, the same
message twice in the batch, a status report beside new messages) makes the batch run again, each webhook
on its own: the outcome is the same as one at a time, nothing lost, nothing twice."""

from __future__ import annotations

import threading
import time

import pytest
import sqlalchemy as sa

from tests.support.group_commit import stored_rows
from tests.support.standard import inbound_body, post_standard, status_body
from webhook_service.database.engine import Database
from webhook_service.database.tables import FeedEvent, Message, RawRequest, RequestLogEntry, StatusEventRow

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def _in_one_batch(client, runtime, bodies: list[bytes]) -> tuple[list[int], list[str]]:
    """Post the bodies at once while another process holds SQLite's writer turn, so that the group
    commit takes them all in one batch; their answers' statuses, and the SQL run meanwhile."""
    statements: list[str] = []

    def trace(connection: sa.Connection) -> None:
        connection.connection.dbapi_connection.set_trace_callback(statements.append)

    sa.event.listen(runtime.db.engine, "begin", trace)
    queue = runtime.db.group_commit._queue
    other_process = Database(runtime.db.url)
    answers: dict[int, int] = {}

    def send(index: int, body: bytes) -> None:
        answers[index] = post_standard(client, body).status_code

    threads = [threading.Thread(target=send, args=(index, body)) for index, body in enumerate(bodies)]
    try:
        with other_process.write_turn():
            for thread in threads:
                thread.start()
            deadline = time.monotonic() + 10
            while len(queue) < len(bodies):
                assert time.monotonic() < deadline, f"{len(queue)} of {len(bodies)} queued"
                time.sleep(0.005)
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
