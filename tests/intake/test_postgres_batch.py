"""Webhooks of new messages stored on PostgreSQL by one statement per group-commit batch
(intake/postgres_batch.py): the rows as one JSON document, unpacked by the database. What that statement
cannot store as assumed (a message there already, the same message twice in the batch) makes the batch run
again, each webhook on its own: the outcome is the same as one at a time, nothing lost, nothing twice. The
rows are the ones the ordinary path writes, value for value."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa
from sqlalchemy import event

from tests.support.feed_events import feed_row
from tests.support.group_commit import batch_sizes, in_one_batch, stored_rows
from tests.support.standard import inbound_body, post_standard, status_body
from webhook_service.database import feed
from webhook_service.database.feed import BOUND_LOCK_SQL
from webhook_service.database.tables import Attachment, FeedEvent, Message, RawRequest, RequestLogEntry, StatusEventRow
from webhook_service.intake import postgres_batch

pytestmark = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)


@pytest.fixture
def batch_statements(monkeypatch) -> list[int]:
    """How many webhooks each run of the one-statement insert was given."""
    return batch_sizes(monkeypatch, postgres_batch, "insert_webhooks")


# The lock a writer takes shared before its events' ids (database/feed.py), taken exclusively here: the
# next writer's statement waits for it (nothing in the service takes it so; a test's way to hold one).
_NEXT_BOUND_HELD = BOUND_LOCK_SQL.replace("pg_advisory_xact_lock_shared(", "pg_advisory_xact_lock(")


@contextmanager
def _next_bound_held_elsewhere(runtime) -> Iterator[sa.Connection]:
    """The next feed writer's bound lock held exclusively by another connection's transaction until the
    block ends; that connection."""
    other = sa.create_engine(runtime.db.url, poolclass=sa.pool.NullPool)
    try:
        with other.connect() as connection, connection.begin():
            connection.execute(sa.text(_NEXT_BOUND_HELD), feed.bound_parameters(connection))
            yield connection
    finally:
        other.dispose()


@contextmanager
def _event_in_flight_elsewhere(runtime) -> Iterator[int]:
    """Another connection's transaction that has added an event to the feed and not committed until the
    block ends; that event's id."""
    other = sa.create_engine(runtime.db.url, poolclass=sa.pool.NullPool)
    try:
        with other.connect() as connection, connection.begin():
            before = connection.scalar(sa.select(sa.func.coalesce(sa.func.max(FeedEvent.id), 0)))
            feed.append(connection, [feed_row()])
            yield connection.scalar(sa.select(FeedEvent.id).where(FeedEvent.id > before))
    finally:
        other.dispose()


def _post_in_background(client, body: bytes, answered: list[int]) -> threading.Thread:
    """Post `body` from a thread of its own, which adds the answer's status to `answered`."""
    sender = threading.Thread(target=lambda: answered.append(post_standard(client, body).status_code))
    sender.start()
    return sender


def test_new_messages_of_a_batch_go_in_one_statement(client, runtime, batch_statements):
    attachments = [{"url": f"https://media.example/{n}.png", "contentType": "image/png"} for n in range(2)]
    bodies = [inbound_body(f"m-batch-{n}", text=f"text {n}") for n in range(4)]
    bodies.append(inbound_body("m-batch-4", attachments=attachments))
    assert in_one_batch(client, runtime, bodies) == [200] * 5
    assert batch_statements == [5]

    messages = {m.provider_message_id: m for m in stored_rows(runtime, Message)}
    raw_requests = {raw.id: raw for raw in stored_rows(runtime, RawRequest)}
    assert sorted(messages) == [f"m-batch-{n}" for n in range(5)]
    for name, message in messages.items():
        assert raw_requests[message.raw_request_id].body == bodies[int(name[-1])]
    # In the order of the batch (the order its webhooks queued): seqs, raw request ids and feed ids.
    by_seq = sorted(messages.values(), key=lambda m: m.seq)
    assert [m.raw_request_id for m in by_seq] == sorted(raw_requests)
    events = sorted(stored_rows(runtime, FeedEvent), key=lambda event: event.id)
    assert [event.message_id for event in events] == [m.id for m in by_seq]

    stored = sorted(stored_rows(runtime, Attachment), key=lambda a: a.index)
    assert [(a.message_seq, a.index, a.source_url) for a in stored] == [
        (messages["m-batch-4"].seq, n, f"https://media.example/{n}.png") for n in range(2)
    ]
    log = stored_rows(runtime, RequestLogEntry)
    assert sorted(entry.outcome for entry in log) == ["accepted"] * 5
    assert {entry.raw_request_id for entry in log} == set(raw_requests)
    assert all(entry.latency_ms is not None and entry.latency_ms >= 0 for entry in log)
    assert {tuple(entry.message_ids) for entry in log} == {(m.id,) for m in messages.values()}


def test_the_rows_are_those_one_webhook_at_a_time_writes(client, runtime, batch_statements):
    """The same webhook through the one statement and through the ordinary path (a batch that runs each
    on its own, as after a conflict): every column but ids and times the same."""
    text = "Grüße 🚀 \\ \" ' \t end"
    body = inbound_body("m-compare-1", text=text, attachments=[{"url": "https://media.example/a.jpg"}])
    assert in_one_batch(client, runtime, [body, inbound_body("m-filler")]) == [200, 200]
    assert batch_statements == [2]
    other = body.replace(b"m-compare-1", b"m-compare-2")
    # A message there already sends the batch to its second run, one webhook at a time.
    assert in_one_batch(client, runtime, [other, inbound_body("m-filler")]) == [200, 200]

    with runtime.db.reading() as session:
        one, two = (
            session.execute(sa.select(Message).where(Message.provider_message_id == name)).scalar_one()
            for name in ("m-compare-1", "m-compare-2")
        )
        ignored = {"seq", "id", "provider_message_id", "raw_request_id", "received_at", "updated_at"}
        ignored |= {"status_updated_at", "_sa_instance_state"}
        assert {k: v for k, v in vars(one).items() if k not in ignored} == {
            k: v for k, v in vars(two).items() if k not in ignored
        }
        assert one.text == text
        raws = [session.get(RawRequest, message.raw_request_id) for message in (one, two)]
        assert raws[0].body == body and raws[1].body == other
        assert raws[0].headers[0][0] == raws[1].headers[0][0]
        # Python's None in a JSON column is JSON null on both paths, as SQLAlchemy writes it.
        kinds = session.execute(
            sa.text("SELECT DISTINCT jsonb_typeof(headers) FROM request_log WHERE outcome = 'accepted'")
        ).scalars()
        assert list(kinds) == ["null"]
        events = {e.message_id: e.data for e in session.scalars(sa.select(FeedEvent))}
        first, second = events[one.id], events[two.id]
        for data in (first, second):
            data.pop("id"), data.pop("providerMessageId"), data.pop("receivedAt"), data.pop("statusUpdatedAt")
            for attachment in data["attachments"]:
                attachment.pop("id")
        assert json.dumps(first, sort_keys=True) == json.dumps(second, sort_keys=True)


def test_a_message_stored_before_sends_the_batch_to_store_each_on_its_own(client, runtime, batch_statements):
    assert post_standard(client, inbound_body("m-old")).status_code == 200
    bodies = [inbound_body("m-new-1"), inbound_body("m-old"), inbound_body("m-new-2")]
    assert in_one_batch(client, runtime, bodies) == [200] * 3
    assert batch_statements == [1, 3], "the old one's alone, then the batch's first run"
    assert sorted(m.provider_message_id for m in stored_rows(runtime, Message)) == ["m-new-1", "m-new-2", "m-old"]
    assert len(stored_rows(runtime, RawRequest)) == 3  # a duplicate keeps none
    assert len(stored_rows(runtime, FeedEvent)) == 3
    assert sorted(entry.outcome for entry in stored_rows(runtime, RequestLogEntry)) == ["accepted"] * 3 + ["duplicate"]


def test_a_webhook_alone_that_repeats_a_message_is_a_duplicate(client, runtime, batch_statements):
    assert post_standard(client, inbound_body("m-again")).status_code == 200
    assert post_standard(client, inbound_body("m-again")).status_code == 200
    assert batch_statements == [1, 1]
    assert len(stored_rows(runtime, Message)) == 1
    assert len(stored_rows(runtime, RawRequest)) == 1
    assert len(stored_rows(runtime, FeedEvent)) == 1
    assert sorted(entry.outcome for entry in stored_rows(runtime, RequestLogEntry)) == ["accepted", "duplicate"]


def test_the_same_message_twice_in_one_batch_is_stored_once(client, runtime):
    body = inbound_body("m-twice")
    assert in_one_batch(client, runtime, [body, inbound_body("m-other"), body]) == [200] * 3
    assert sorted(m.provider_message_id for m in stored_rows(runtime, Message)) == ["m-other", "m-twice"]
    assert len(stored_rows(runtime, FeedEvent)) == 2
    assert len(stored_rows(runtime, RawRequest)) == 2
    assert sorted(entry.outcome for entry in stored_rows(runtime, RequestLogEntry)) == [
        "accepted",
        "accepted",
        "duplicate",
    ]


def test_a_status_report_beside_new_messagesin_one_batch(client, runtime, batch_statements):
    bodies = [inbound_body("m-in-1"), status_body("m-out", "delivered"), inbound_body("m-in-2")]
    assert in_one_batch(client, runtime, bodies) == [200] * 3
    assert batch_statements == [2], "the report goes its own way, in the same transaction"
    messages = {m.provider_message_id: m for m in stored_rows(runtime, Message)}
    assert set(messages) == {"m-in-1", "m-in-2", "m-out"}
    assert messages["m-out"].status == "delivered" and not messages["m-out"].has_content
    assert len(stored_rows(runtime, StatusEventRow)) == 1
    assert len(stored_rows(runtime, RawRequest)) == 3
    assert len(stored_rows(runtime, FeedEvent)) == 3
    assert sorted(entry.outcome for entry in stored_rows(runtime, RequestLogEntry)) == ["accepted"] * 3


def test_a_batch_in_a_transaction_lets_the_server_end_it_if_it_stops_after_its_bound(client, runtime, monkeypatch):
    """The batch's statement takes the feed's bound lock in a CTE; the same CTE sets, for the rest of the
    transaction, how long it may sit idle before the server ends it (database/feed.py): the client's
    answer timeout, 3 s with the default 2 s statement timeout."""
    run_batch, seen = postgres_batch.run_batch, []

    def watched(connection, *args, **kwargs):
        returned = run_batch(connection, *args, **kwargs)
        seen.append(connection.exec_driver_sql("SHOW idle_in_transaction_session_timeout").scalar())
        return returned

    monkeypatch.setattr(postgres_batch, "run_batch", watched)
    bodies = [inbound_body("m-in-1"), status_body("m-out", "delivered"), inbound_body("m-in-2")]
    assert in_one_batch(client, runtime, bodies) == [200] * 3
    assert seen == ["3s"]
    with runtime.db.engine.connect() as connection:  # for that transaction only
        assert connection.exec_driver_sql("SHOW idle_in_transaction_session_timeout").scalar() == "0"


def test_a_batch_does_not_wait_for_another_feed_writer_and_stays_past_the_head(client, runtime):
    """Feed writers commit side by side (database/feed.py): while another transaction has an event in
    flight, a webhook is stored and answered; its event is past the feed's head, which stays below the
    other's, until that one commits."""
    with _event_in_flight_elsewhere(runtime) as in_flight:
        assert post_standard(client, inbound_body("m-l")).status_code == 200
        (stored,) = [e.id for e in stored_rows(runtime, FeedEvent)]
        assert stored > in_flight
        with runtime.db.reading() as session:
            assert feed.head(session) < in_flight
    with runtime.db.reading() as session:
        assert feed.head(session) >= stored
    assert len(stored_rows(runtime, FeedEvent)) == 2


def test_a_body_of_every_byte_and_times_to_the_microsecond(client, runtime):
    """The raw request keeps the body's bytes exactly (sent as hex in the JSON document), and times keep
    their microseconds (sent as ISO 8601)."""
    body = inbound_body("m-bytes", text="x" * 10)
    assert post_standard(client, body).status_code == 200
    with runtime.db.reading() as session:
        raw = session.scalars(sa.select(RawRequest)).one()
        message = session.scalars(sa.select(Message)).one()
        entry = session.scalars(sa.select(RequestLogEntry)).one()
    assert raw.body == body
    assert raw.received_at == message.received_at == entry.received_at
    assert raw.received_at.tzinfo is not None and abs(raw.received_at - datetime.now(UTC)).total_seconds() < 60

    # Bytes no JSON string could carry as they are: through the encoder the statement uses.
    every_byte = bytes(range(256))
    document = json.loads(
        postgres_batch.NewMessagesWebhook.encode(
            {name: every_byte if name == "body" else None for name in postgres_batch.RAW_COLUMNS},
            [],
            [],
            dict.fromkeys(postgres_batch.LOG_COLUMNS),
            [],
        )
    )
    with runtime.db.reading() as session:
        decoded = session.execute(sa.text("SELECT CAST(:hex AS bytea)"), {"hex": document["raw"]["body"]}).scalar()
    assert bytes(decoded) == every_byte


@pytest.fixture
def protocol(runtime, tmp_path):
    """What the service's connections send PostgreSQL, as libpq's trace of the wire protocol: a function
    that returns the simple queries (BEGIN, COMMIT...) and the statements sent since it was last called."""
    trace = tmp_path / "protocol.trace"
    descriptor = os.open(trace, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    traced: list[psycopg.Connection] = []

    def _trace(dbapi_connection, _record) -> None:
        dbapi_connection.pgconn.trace(descriptor)
        dbapi_connection.pgconn.set_trace_flags(psycopg.pq.Trace.SUPPRESS_TIMESTAMPS)
        traced.append(dbapi_connection)

    event.listen(runtime.db.engine, "connect", _trace)
    runtime.db.group_commit.close()
    runtime.db.engine.dispose()  # every connection from here on is a new one, traced
    read = 0

    def sent() -> list[str]:
        nonlocal read
        lines = Path(trace).read_text().splitlines()[read:]
        read += len(lines)
        # "F\t<length>\tQuery\t "BEGIN"" for a simple query; "F ... Parse ..." opens a statement.
        return [
            line.split("\t")[3].strip().strip('"').split(" ")[0] if "\tQuery\t" in line else "statement"
            for line in lines
            if line.startswith("F") and ("\tQuery\t" in line or "\tBind\t" in line)
        ]

    yield sent
    event.remove(runtime.db.engine, "connect", _trace)
    for connection in traced:
        if not connection.closed:
            connection.pgconn.untrace()
    os.close(descriptor)


def test_a_batch_of_new_messages_alone_is_one_round_trip(client, runtime, protocol, batch_statements):
    """The one statement is atomic on its own: when a transaction runs nothing else it goes without BEGIN
    and COMMIT. A transaction that runs more (a retry's, on the ordinary path) still begins and commits:
    the connection is back out of autocommit."""
    assert post_standard(client, inbound_body("m-trip-1")).status_code == 200
    protocol()  # a new connection's own set-up
    assert post_standard(client, inbound_body("m-trip-2")).status_code == 200
    assert protocol() == ["statement"]
    assert in_one_batch(client, runtime, [inbound_body(f"m-trip-b{n}") for n in range(3)]) == [200] * 3
    assert protocol() == ["statement"], "the three in one (the holder's batch ran nothing: sent nothing)"
    assert batch_statements == [1, 1, 3]

    assert post_standard(client, inbound_body("m-trip-2")).status_code == 200
    sent = protocol()
    assert sent[:2] == ["statement", "BEGIN"] and sent[-1] == "COMMIT" and sent.count("statement") >= 3
    assert len(stored_rows(runtime, Message)) == 5
    assert len(stored_rows(runtime, FeedEvent)) == 5


def test_a_retry_alone_fails_its_statement_and_is_stored_as_a_duplicate(client, runtime, protocol):
    """Without BEGIN, a message there already fails the one statement whole: nothing of it stays (no
    raw request, feed event or log row of its own), and the webhook's ordinary way records the
    duplicate in a transaction of its own."""
    assert post_standard(client, inbound_body("m-retry")).status_code == 200
    protocol()
    assert post_standard(client, inbound_body("m-retry")).status_code == 200
    sent = protocol()
    assert sent[0] == "statement" and sent[1] == "BEGIN" and sent[-1] == "COMMIT"
    assert len(stored_rows(runtime, Message)) == 1
    assert len(stored_rows(runtime, RawRequest)) == 1
    assert len(stored_rows(runtime, FeedEvent)) == 1
    assert sorted(entry.outcome for entry in stored_rows(runtime, RequestLogEntry)) == ["accepted", "duplicate"]


def test_the_connection_lost_during_the_one_statement(client, runtime, protocol):
    """The server ends the connection while the statement waits (for the feed's bound lock, held elsewhere): the
    connection is dropped, not set back into a pool it would leave in autocommit, the webhook is stored
    once on a new connection, and that connection's transactions begin and commit as before."""
    assert post_standard(client, inbound_body("m-lost-0")).status_code == 200
    answered: list[int] = []
    with _next_bound_held_elsewhere(runtime) as connection:
        sender = _post_in_background(client, inbound_body("m-lost-1"), answered)
        # This database's only: another xdist worker's test may have a statement waiting in its own.
        waiting = sa.text(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
            " AND wait_event_type = 'Lock' AND query LIKE 'WITH webhook%'"
        )
        deadline = time.monotonic() + 10
        while not (pids := connection.execute(waiting).scalars().all()):
            assert time.monotonic() < deadline, "the statement never waited for the lock"
            time.sleep(0.01)
        connection.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pids[0]})
        time.sleep(0.2)  # the statement's second try, on a new connection, waits for the lock too
    sender.join(timeout=10)
    assert answered == [200]
    assert sorted(m.provider_message_id for m in stored_rows(runtime, Message)) == ["m-lost-0", "m-lost-1"]
    assert len(stored_rows(runtime, FeedEvent)) == 2
    # The new connection's transactions begin and commit: a retry's, of several statements.
    protocol()
    assert post_standard(client, inbound_body("m-lost-1")).status_code == 200
    sent = protocol()
    assert sent[:2] == ["statement", "BEGIN"] and sent[-1] == "COMMIT" and sent.count("statement") >= 3
    outcomes = sorted(entry.outcome for entry in stored_rows(runtime, RequestLogEntry))
    assert outcomes == ["accepted", "accepted", "duplicate"]


def test_raw_request_ids_come_from_the_sequence_the_column_default_uses(runtime):
    """The statement names the raw requests' sequence itself (a constant its plan keeps): the one the
    migrations gave the column's default, so that ids from the statement and from an ordinary insert
    never meet."""
    with runtime.db.reading() as session:
        default = session.execute(
            sa.text(
                "SELECT column_default FROM information_schema.columns"
                " WHERE table_schema = current_schema() AND table_name = 'raw_requests' AND column_name = 'id'"
            )
        ).scalar_one()
        serial = session.execute(sa.text("SELECT pg_get_serial_sequence('raw_requests', 'id')")).scalar_one()
    assert default == f"nextval('{postgres_batch.RAW_ID_SEQUENCE}'::regclass)"
    assert serial.rsplit(".", 1)[-1] == postgres_batch.RAW_ID_SEQUENCE
    for attachments in (True, False):
        assert f"'{postgres_batch.RAW_ID_SEQUENCE}'" in postgres_batch._statement(attachments=attachments)


def test_a_batch_without_attachments_runs_the_statement_without_their_insert(client, runtime, monkeypatch):
    """Most inbound messages have no attachments, and a data-modifying WITH runs (opening the table and
    its indexes) even when it inserts nothing: such a batch runs the statement that leaves attachments
    out. A batch where any webhook has one runs the whole statement, and stores them."""
    ran: list[str] = []

    class Spy:
        def __init__(self, name: str, statement):
            self.name, self.statement = name, statement

        def run(self, connection, values):
            ran.append(self.name)
            return self.statement.run(connection, values)

    monkeypatch.setattr(postgres_batch, "INSERT_WEBHOOKS", Spy("whole", postgres_batch.INSERT_WEBHOOKS))
    monkeypatch.setattr(
        postgres_batch,
        "INSERT_WEBHOOKS_WITHOUT_ATTACHMENTS",
        Spy("without attachments", postgres_batch.INSERT_WEBHOOKS_WITHOUT_ATTACHMENTS),
    )
    assert "attachments" not in postgres_batch._statement(attachments=False)

    assert in_one_batch(client, runtime, [inbound_body(f"m-plain-{n}") for n in range(3)]) == [200] * 3
    assert ran == ["without attachments"]
    with_one = inbound_body("m-with-1", attachments=[{"url": "https://media.example/1.png"}])
    assert in_one_batch(client, runtime, [inbound_body("m-plain-3"), with_one]) == [200] * 2
    assert ran == ["without attachments", "whole"]

    messages = {message.provider_message_id: message for message in stored_rows(runtime, Message)}
    assert sorted(messages) == ["m-plain-0", "m-plain-1", "m-plain-2", "m-plain-3", "m-with-1"]
    assert [(a.message_seq, a.source_url) for a in stored_rows(runtime, Attachment)] == [
        (messages["m-with-1"].seq, "https://media.example/1.png")
    ]
    assert len(stored_rows(runtime, FeedEvent)) == 5


def test_a_status_report_alone_is_one_round_trip(client, runtime, protocol):
    """A webhook of reports goes in with one statement (intake/postgres_reports.py), its message read and
    locked there when it is known, inserted as a placeholder when it is not; alone in its batch, that
    statement is its transaction."""
    assert post_standard(client, inbound_body("m-known")).status_code == 200
    protocol()
    assert post_standard(client, status_body("m-known", "delivered")).status_code == 200
    assert protocol() == ["statement"]
    assert post_standard(client, status_body("m-unknown", "sent")).status_code == 200
    assert protocol() == ["statement"]
    for status in ("accepted", "delivered"):  # the first behind "sent", the second past it
        assert post_standard(client, status_body("m-unknown", status)).status_code == 200
    protocol()

    messages = {m.provider_message_id: m for m in stored_rows(runtime, Message)}
    # An inbound message is not delivered by a report: the report is kept, not applied.
    assert (messages["m-known"].status, messages["m-known"].has_content) == ("received", True)
    assert (messages["m-unknown"].status, messages["m-unknown"].has_content) == ("delivered", False)
    reports = sorted((r.id, r.message_seq, r.status, r.applied) for r in stored_rows(runtime, StatusEventRow))
    assert [report[1:] for report in reports] == [
        (messages["m-known"].seq, "delivered", False),
        (messages["m-unknown"].seq, "sent", True),
        (messages["m-unknown"].seq, "accepted", False),
        (messages["m-unknown"].seq, "delivered", True),
    ]
    feed_types = [e.type for e in sorted(stored_rows(runtime, FeedEvent), key=lambda e: e.id)]
    assert feed_types == ["message.received", *["message.status"] * 4]


@pytest.mark.parametrize("way", ["batch statement", "ordinary"])
def test_a_report_whose_message_commits_while_its_statement_waits(client, runtime, protocol, monkeypatch, way):
    """Another transaction inserts the report's message and commits while the report's statement waits
    for it: the statement's snapshot, taken as it began, does not hold the message.
    - The batch's statement (intake/postgres_reports.py) then fails whole (the report's message seq is
      NULL), and the report goes the ordinary way, which by then finds the message committed.
    - The ordinary way's first statement (as in a batch that runs each webhook on its own) has the same
      blind spot: it reads and locks the message on its own, one statement more.
    Either way the report is recorded once, against that message."""
    if way == "ordinary":
        from webhook_service.intake.message_store import _Recorder

        monkeypatch.setattr(_Recorder, "encode_reports", lambda *_: None)
    assert post_standard(client, inbound_body("m-first")).status_code == 200
    [first] = stored_rows(runtime, Message)
    protocol()
    other = sa.create_engine(runtime.db.url, poolclass=sa.pool.NullPool)
    answered: list[int] = []
    try:
        with other.connect() as connection:
            transaction = connection.begin()
            connection.execute(
                sa.insert(Message.__table__).values(
                    tenant_id=first.tenant_id,
                    provider=first.provider,
                    connection=first.connection,
                    provider_message_id="m-race",
                    direction="outbound",
                    has_content=True,
                    text="sent elsewhere",
                    status="sent",
                )
            )
            sender = _post_in_background(client, status_body("m-race", "delivered"), answered)
            deadline = time.monotonic() + 10
            waiting = (
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
            while connection.execute(sa.text(waiting)).scalar() == 0:
                assert time.monotonic() < deadline, "the report's statement never waited for the message"
                time.sleep(0.01)
            transaction.commit()
        sender.join(10)
    finally:
        other.dispose()
    assert answered == [200]
    expected = ["BEGIN", *["statement"] * 6, "COMMIT"]
    if way == "batch statement":
        expected = ["statement", "BEGIN", *["statement"] * 5, "COMMIT"]
    assert protocol() == expected
    messages = [m for m in stored_rows(runtime, Message) if m.provider_message_id == "m-race"]
    assert [(m.status, m.text) for m in messages] == [("delivered", "sent elsewhere")]
    reports = [(r.message_seq, r.status, r.applied) for r in stored_rows(runtime, StatusEventRow)]
    assert reports == [(messages[0].seq, "delivered", True)]
