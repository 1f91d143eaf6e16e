"""Webhooks of status reports stored on PostgreSQL by one statement per group-commit batch
(intake/postgres_reports.py): each report's message read and locked, or inserted as a placeholder, the
status rule applied in the database, the report, the message's new status, the request log row and the
feed event. What that statement cannot store as assumed (a report recorded before, two reports of one
message in the batch, a message it cannot see) makes the batch run again, each webhook on its own: the
outcome is the same as one at a time, nothing lost, nothing twice. The rows are the ones the ordinary way
writes, value for value."""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from tests.fixtures.services import own_postgres_database
from tests.support.group_commit import batch_sizes, in_one_batch, store_events, stored_rows
from tests.support.plans import rows_read, without_statement_timeout
from tests.support.standard import inbound_body, post_standard, status_body
from webhook_service.app import create_app
from webhook_service.database import prepared
from webhook_service.database.messages import find_message
from webhook_service.database.migrate import migrate
from webhook_service.database.tables import FeedEvent, Message, RawRequest, RequestLogEntry, StatusEventRow
from webhook_service.intake import message_store, postgres_reports
from webhook_service.model.events import StatusEvent
from webhook_service.runtime import Runtime

pytestmark = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)


@pytest.fixture
def report_statements(monkeypatch) -> list[int]:
    """How many webhooks each call of the one-statement insert was given (a call that finds two reports
    of one message runs no statement, and is counted too)."""
    return batch_sizes(monkeypatch, postgres_reports, "insert_reports")


def _report_body(provider_message_id: str, status: str, **data) -> bytes:
    """A Standard Webhooks status report with any of its optional fields (from, to, errorCode...)."""
    document = json.loads(status_body(provider_message_id, status))
    document["data"].update(data)
    return json.dumps(document).encode()


def _by_name(runtime) -> dict[str, Message]:
    return {message.provider_message_id: message for message in stored_rows(runtime, Message)}


def test_reports_of_a_batch_go_in_one_statement(client, runtime, report_statements):
    assert post_standard(client, inbound_body("m-in")).status_code == 200
    assert post_standard(client, status_body("m-out", "sent")).status_code == 200
    bodies = [status_body("m-out", "delivered"), status_body("m-in", "delivered"), status_body("m-new", "queued")]
    assert in_one_batch(client, runtime, bodies) == [200] * 3
    assert report_statements == [1, 3]

    messages = _by_name(runtime)
    assert (messages["m-out"].status, messages["m-out"].has_content) == ("delivered", False)
    # A received message is final: the report is kept, not applied.
    assert (messages["m-in"].status, messages["m-in"].has_content) == ("received", True)
    assert (messages["m-new"].status, messages["m-new"].has_content) == ("queued", False)
    raw_requests = {raw.id: raw.body for raw in stored_rows(runtime, RawRequest)}
    reports = sorted(stored_rows(runtime, StatusEventRow), key=lambda report: report.id)
    seqs = {message.seq: name for name, message in messages.items()}
    # The first alone; the batch's in the order they queued, whichever that was.
    assert (seqs[reports[0].message_seq], reports[0].status, reports[0].applied) == ("m-out", "sent", True)
    assert sorted((seqs[r.message_seq], r.status, r.applied) for r in reports[1:]) == [
        ("m-in", "delivered", False),
        ("m-new", "queued", True),
        ("m-out", "delivered", True),
    ]
    assert sorted(raw_requests[r.raw_request_id] for r in reports[1:]) == sorted(bodies)

    events = sorted(stored_rows(runtime, FeedEvent), key=lambda event: event.id)
    assert [event.type for event in events] == ["message.received", *["message.status"] * 4]
    assert sorted(
        (e.message_id, e.data["messageId"], e.data["applied"], e.data["currentStatus"]) for e in events[2:]
    ) == sorted(
        [
            (messages["m-out"].id, messages["m-out"].id, True, "delivered"),
            (messages["m-in"].id, messages["m-in"].id, False, "received"),
            (messages["m-new"].id, messages["m-new"].id, True, "queued"),
        ]
    )
    log = {entry.raw_request_id: entry for entry in stored_rows(runtime, RequestLogEntry)}
    assert {entry.outcome for entry in log.values()} == {"accepted"}
    for report in reports:
        entry = log[report.raw_request_id]
        assert entry.message_ids == [messages[seqs[report.message_seq]].id]
        assert entry.provider_message_ids == [seqs[report.message_seq]]
        assert entry.latency_ms is not None and entry.latency_ms >= 0


# Reports in the order a provider might send them, each alone: a placeholder without addresses, one
# that fills them in, one of a new message with addresses and an error, one of a received message, a late
# one, an unmapped status, a read receipt past delivered.
_HISTORY = [
    ("inbound", "in", None, {}),
    ("report", "out", "sent", {}),
    (
        "report",
        "out",
        "delivered",
        {"from": "+15550002222", "to": ["+15550003333"], "occurredAt": "2026-01-02T03:04:05Z"},
    ),
    ("report", "failed", "failed", {"from": "+15550002222", "errorCode": "30007", "errorMessage": "Filtered"}),
    ("report", "in", "delivered", {}),
    ("report", "out", "queued", {"from": "+15550004444"}),
    ("report", "out", "unknown", {"providerStatus": "weird"}),
    ("report", "out", "read", {}),
]


def _store_history(client, prefix: str) -> None:
    for kind, name, status, data in _HISTORY:
        body = (
            inbound_body(f"{prefix}-{name}") if kind == "inbound" else _report_body(f"{prefix}-{name}", status, **data)
        )
        assert post_standard(client, body).status_code == 200


def _comparable(runtime, prefix: str) -> dict:
    """What the history left for the messages named with `prefix`, without ids and arrival times."""
    messages = {m.seq: m for m in stored_rows(runtime, Message) if m.provider_message_id.startswith(prefix)}
    ids = {m.id: m.provider_message_id.removeprefix(prefix) for m in messages.values()}
    moment = {"received_at", "updated_at", "seq", "id", "raw_request_id", "_sa_instance_state"}
    fields = [
        {k: v for k, v in vars(m).items() if k not in moment | {"provider_message_id", "status_updated_at"}}
        | {"name": ids[m.id], "timed": m.status_updated_at is not None}
        for m in sorted(messages.values(), key=lambda m: m.seq)
    ]
    reports = [
        {k: v for k, v in vars(r).items() if k not in moment | {"message_seq", "dedupe_key"}}
        | {"name": ids[messages[r.message_seq].id]}
        for r in sorted(stored_rows(runtime, StatusEventRow), key=lambda r: r.id)
        if r.message_seq in messages
    ]
    events = [
        dict(e.data, messageId=ids[e.message_id], providerMessageId=ids[e.message_id], type=e.type)
        for e in sorted(stored_rows(runtime, FeedEvent), key=lambda e: e.id)
        if e.message_id in ids and e.type == "message.status"
    ]
    log = [
        (entry.outcome, [ids[i] for i in entry.message_ids], entry.addresses, entry.headers)
        for entry in sorted(stored_rows(runtime, RequestLogEntry), key=lambda entry: entry.id)
        if entry.message_ids and entry.message_ids[0] in ids
    ]
    return {"messages": fields, "reports": reports, "events": events, "log": log}


def test_the_rows_are_those_the_ordinary_way_writes(client, runtime, report_statements, monkeypatch):
    _store_history(client, "a")
    assert report_statements == [1] * 7
    with monkeypatch.context() as ordinary:
        ordinary.setattr(message_store._Recorder, "encode_reports", lambda *_: None)
        _store_history(client, "b")
    assert report_statements == [1] * 7
    one, other = _comparable(runtime, "a"), _comparable(runtime, "b")
    assert one == other
    # What the history is about, so that the comparison is not of two empty sets.
    out = next(m for m in one["messages"] if m["name"] == "-out")
    assert (out["status"], out["from_number"], out["to_numbers"]) == ("read", "+15550002222", ["+15550003333"])
    assert [(r["status"], r["applied"]) for r in one["reports"] if r["name"] == "-out"] == [
        ("sent", True),
        ("delivered", True),
        ("queued", False),
        ("unknown", False),
        ("read", True),
    ]
    assert len(one["events"]) == 7 and len(one["log"]) == 8


def test_a_repeated_report_makes_its_batch_store_each_on_its_own(client, runtime, report_statements):
    """A provider's retry of a report (Standard Webhooks: the same webhook-id, the report's idempotency
    key) fails the batch's statement, and the batch runs again: the retry is a duplicate."""
    again = status_body("m-again", "delivered")
    assert post_standard(client, again, webhook_id="msg_again").status_code == 200
    bodies = [status_body("m-other", "sent"), again, inbound_body("m-in")]
    assert in_one_batch(client, runtime, bodies, webhook_ids={1: "msg_again"}) == [200] * 3
    assert report_statements == [1, 2], "the batch's statement failed, and the batch ran again"
    assert sorted(m.provider_message_id for m in stored_rows(runtime, Message)) == ["m-again", "m-in", "m-other"]
    assert len(stored_rows(runtime, StatusEventRow)) == 2
    assert len(stored_rows(runtime, RawRequest)) == 3  # a duplicate keeps none
    assert len(stored_rows(runtime, FeedEvent)) == 3
    outcomes = sorted(entry.outcome for entry in stored_rows(runtime, RequestLogEntry))
    assert outcomes == ["accepted"] * 3 + ["duplicate"]


def test_two_reports_of_one_message_in_a_batch_apply_in_their_order(client, runtime, report_statements):
    """The second report's rule reads the status the first leaves, which one statement cannot: the batch
    runs again, each webhook on its own, in the order they queued (whichever that was)."""
    bodies = [status_body("m-two", "sent"), status_body("m-two", "delivered"), status_body("m-one", "sent")]
    assert in_one_batch(client, runtime, bodies) == [200] * 3
    assert report_statements == [3], "found before any statement ran; the batch ran again"
    messages = _by_name(runtime)
    assert messages["m-two"].status == "delivered"
    reports = {r.status: r for r in stored_rows(runtime, StatusEventRow) if r.message_seq == messages["m-two"].seq}
    assert sorted(reports) == ["delivered", "sent"]
    assert reports["delivered"].applied
    # "sent" applies only if it came first.
    assert reports["sent"].applied == (reports["sent"].id < reports["delivered"].id)
    events = {e.data["status"]: e.data for e in stored_rows(runtime, FeedEvent) if e.message_id == messages["m-two"].id}
    assert events["delivered"]["currentStatus"] == "delivered"
    assert events["sent"]["currentStatus"] == ("sent" if reports["sent"].applied else "delivered")
    assert len(stored_rows(runtime, StatusEventRow)) == 3


def _store_reports(runtime, reports: list[StatusEvent]):
    """A webhook of several reports (as a provider that batches them sends), through the message store."""
    return store_events(runtime, reports, f"several-{len(reports)}")


def test_a_webhook_of_several_reports(runtime, report_statements):
    stored = _store_reports(
        runtime, [StatusEvent("m-x", "sent", "sent"), StatusEvent("m-y", "failed", "failed", error_code="1")]
    )
    assert report_statements == [1]
    messages = _by_name(runtime)
    assert stored.message_ids == [messages["m-x"].id, messages["m-y"].id]
    assert (messages["m-x"].status, messages["m-y"].status) == ("sent", "failed")
    [entry] = stored_rows(runtime, RequestLogEntry)
    assert entry.message_ids == stored.message_ids and entry.raw_request_id == stored.raw_request_id
    assert entry.provider_message_ids == ["m-x", "m-y"]

    # More reports than one statement takes: the ordinary way, each recorded.
    many = [StatusEvent(f"m-many-{n}", "sent", "sent") for n in range(postgres_reports.MAX_REPORTS + 1)]
    stored = _store_reports(runtime, many)
    assert report_statements == [1, 1], "one webhook, refused before a statement ran"
    assert len(stored.message_ids) == len(many)
    assert len(stored_rows(runtime, StatusEventRow)) == 2 + len(many)

    # Two reports of one message in one webhook: the ordinary way, each applied after the other.
    stored = _store_reports(
        runtime, [StatusEvent("m-x", "delivered", "delivered"), StatusEvent("m-x", "read", "read", event_id="r")]
    )
    assert report_statements == [1, 1]
    assert stored.message_ids == [messages["m-x"].id]
    assert _by_name(runtime)["m-x"].status == "read"
    assert len(stored_rows(runtime, StatusEventRow)) == 4 + len(many)


def test_reports_from_two_processes_at_once(settings, resolver, client):
    """Two web processes (two group commits, two connections) storing the reports of the same messages
    at once, in any order and some twice: every report recorded once, every message's status the one its
    reports lead to, a feed event per report, and no answer but 200."""
    second = Runtime(settings, resolver=resolver)
    try:
        clients = [client, create_app(runtime=second).test_client()]
        names = [f"m-{n}" for n in range(30)]
        reports = [
            (status_body(name, status), f"msg_{name}_{status}")
            for name in names
            for status in ("queued", "sent", "delivered")
        ]
        reports += random.Random(7).sample(reports, 20)  # retries: the same webhook-id
        random.Random(8).shuffle(reports)
        answers: list[int] = []

        def send(share: list[tuple[bytes, str]], which) -> None:
            answers.extend(post_standard(which, body, webhook_id=key).status_code for body, key in share)

        threads = [threading.Thread(target=send, args=(reports[i::8], clients[i % 2])) for i in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert answers == [200] * len(reports)

        messages = _by_name(second)
        assert {name: message.status for name, message in messages.items()} == dict.fromkeys(names, "delivered")
        reports = stored_rows(second, StatusEventRow)
        assert len(reports) == 90
        assert len({(r.message_seq, r.status) for r in reports}) == 90
        assert len(stored_rows(second, FeedEvent)) == 90
        outcomes = [entry.outcome for entry in stored_rows(second, RequestLogEntry)]
        assert sorted(set(outcomes)) == ["accepted", "duplicate"] and outcomes.count("accepted") == 90
        with second.db.reading() as session:
            feed_ids = session.execute(sa.select(FeedEvent.id).order_by(FeedEvent.id)).scalars().all()
        assert len(feed_ids) == len(set(feed_ids))
    finally:
        second.close()


def _messages_reads_by_way(runtime, since: dict[str, int] | None = None) -> dict[str, int]:
    """For a failure's message: rows read from messages by sequential scans and by each index."""
    with runtime.db.engine.connect() as connection:
        rows = connection.exec_driver_sql(
            "SELECT 'seq scans', coalesce(seq_tup_read, 0) FROM pg_stat_user_tables WHERE relname = 'messages'"
            " UNION ALL SELECT indexrelname, idx_tup_read FROM pg_stat_user_indexes WHERE relname = 'messages'"
        ).all()
    return {way: int(count) - (since or {}).get(way, 0) for way, count in rows}


def _messages_rows_read(runtime) -> int:
    """Rows PostgreSQL has read from messages so far, once the group commit's session has reported them."""
    runtime.db.group_commit.run(lambda connection: connection.exec_driver_sql("SELECT pg_stat_force_next_flush()"))
    time.sleep(0.2)  # the group commit's session reports when it goes idle, after its commit
    return rows_read(runtime.db.engine, "messages")


def _copy_message(connection: sa.Connection, source: str, prefix: str, *, tenant: str, count: int) -> None:
    """`count` outbound messages named `prefix`-n (their ids too), copies of the message `source` but for
    the tenant (an SQL expression)."""
    connection.exec_driver_sql(
        "INSERT INTO messages (id, tenant_id, provider, connection, provider_message_id, direction, to_numbers,"
        " has_content, received_at, updated_at, extra)"
        f" SELECT '{prefix}-' || n, {tenant}, provider, connection, '{prefix}-' || n, 'outbound', '[]', false,"
        f" received_at, updated_at, '{{}}' FROM messages, generate_series(1, {count}) AS n"
        f" WHERE provider_message_id = '{source}'"
    )
    # The fill's own reads are counted before the window opens: a session reports its counts when it goes
    # idle, at most once a second.
    connection.exec_driver_sql("SELECT pg_stat_force_next_flush()")


def _assert_reports_read_messages_by_key(client, runtime) -> None:
    """Reports of 20 of the grown messages read a few rows of messages each, not the table or the tenant's."""
    time.sleep(0.4)  # past REPLAN_SECONDS: the batch's statement is planned on the tables as they are now
    before = _messages_rows_read(runtime)
    where_before = _messages_reads_by_way(runtime)
    for n in range(1, 21):
        assert post_standard(client, status_body(f"grown-{n}", "delivered")).status_code == 200
    read = _messages_rows_read(runtime) - before
    assert read < 20 * 20, (
        f"{read} rows of messages read for 20 reports; by way: {_messages_reads_by_way(runtime, since=where_before)}"
    )


@pytest.fixture
def new_deployment(settings, resolver) -> Iterator[tuple[Any, Runtime]]:
    """A client and the runtime of the service on a database just migrated, as a new deployment's: its
    tables never analyzed, no other test's rows or statistics in them. On the worker's shared test
    database, full runs read 50,000-80,000 entries of `ix_messages_tenant_seq` per report here: autovacuum
    had analyzed messages while it held other tests' tenants of one message each, and the reports' lookup
    by key went through the tenant's index (`test_a_tenant_the_statistics_think_small_is_still_read_by_its_key`,
    mended by migration 0015)."""
    with own_postgres_database("wsvc_new_deployment") as url:
        migrate(url)
        runtime = Runtime(settings.model_copy(update={"database_url": url}), resolver=resolver)
        try:
            app = create_app(runtime=runtime)
            app.config["TESTING"] = True
            yield app.test_client(), runtime
        finally:
            runtime.close()


@pytest.mark.slow
@pytest.mark.parametrize("way", ["batch statement", "ordinary"])
def test_the_plan_follows_the_messages_table_as_it_grows(new_deployment, monkeypatch, way):
    """A prepared statement's generic plan is made once (at its sixth run) for the tables as they are
    then, and kept until autovacuum next analyzes them. Made on a new deployment's empty messages table,
    it read messages by scanning them, or by the tenant's index, whatever they grew to: on `bench/intake.py
    --webhooks reports` PostgreSQL's CPU per report grew from 0.23 to 1.2 ms in 12,000 reports. The
    batch's statement is prepared anew every `REPLAN_SECONDS` (here a fraction of a second), and the
    ordinary way's statements, which read tables, are planned at every run (database/postgres.py):
    reports of messages among 30,000 read a few rows each."""
    client, runtime = new_deployment
    monkeypatch.setattr(prepared, "REPLAN_SECONDS", 0.3)
    if way == "ordinary":
        monkeypatch.setattr(message_store._Recorder, "encode_reports", lambda *_: None)
    for n in range(12):  # more runs than psycopg and PostgreSQL take before keeping a generic plan
        assert post_standard(client, status_body(f"m-early-{n}", "sent")).status_code == 200
    with runtime.db.engine.begin() as connection:  # the table grows; no ANALYZE comes meanwhile
        without_statement_timeout(connection)
        _copy_message(connection, "m-early-0", "grown", tenant="tenant_id", count=30000)
    _assert_reports_read_messages_by_key(client, runtime)
    assert {m.status for m in stored_rows(runtime, Message) if m.provider_message_id == "grown-7"} == {"delivered"}


# What ANALYZE last saw in messages, as an SQL expression of n for the tenant of each of its messages.
STATISTICS_HISTORIES = {
    # A multi-tenant deployment's first days: ANALYZE counts as many tenants as messages.
    "tenants of one message each": ("'tenant-' || n", 2000),
    # Other tenants than the one that grows since (new, or too small then to be among the most common).
    "other tenants": ("'tenant-' || mod(n, 3)", 3000),
}


@pytest.mark.parametrize("history", STATISTICS_HISTORIES)
@pytest.mark.parametrize("way", ["batch statement", "ordinary"])
def test_a_tenant_the_statistics_think_small_is_still_read_by_its_key(new_deployment, monkeypatch, way, history):
    """When ANALYZE saw no messages of a tenant, or one per tenant, PostgreSQL estimated one message for
    the tenant, and found a message by its key through `ix_messages_tenant_seq`, reading every message of
    the tenant: 30,000 per report here (the growth test's mystery in full runs, on the statistics of the
    tests before it). Migration 0015 makes it estimate a tenant it cannot see at a hundredth of the
    messages; the batch statement sees none, and the ordinary way's hides its tenant (`_has_key`)."""
    client, runtime = new_deployment
    if way == "ordinary":
        monkeypatch.setattr(message_store._Recorder, "encode_reports", lambda *_: None)
    monkeypatch.setattr(prepared, "REPLAN_SECONDS", 0.3)  # the batch's statement planned on the statistics
    assert post_standard(client, status_body("m-seed", "sent")).status_code == 200
    tenants, count = STATISTICS_HISTORIES[history]
    with runtime.db.engine.begin() as connection:
        without_statement_timeout(connection)
        seed = "SELECT tenant_id FROM messages WHERE provider_message_id = 'm-seed'"
        tenant_id = connection.exec_driver_sql(seed).scalar_one()
        _copy_message(connection, "m-seed", "seen", tenant=tenants, count=count)
    with runtime.db.engine.begin() as connection:
        connection.exec_driver_sql("ANALYZE messages")  # its statistics are kept when it commits
    with runtime.db.engine.begin() as connection:
        without_statement_timeout(connection)
        connection.exec_driver_sql("DELETE FROM messages WHERE provider_message_id LIKE 'seen-%%'")
        _copy_message(connection, "m-seed", "grown", tenant="tenant_id", count=30000)  # unanalyzed
    _assert_reports_read_messages_by_key(client, runtime)
    found = find_message(runtime.db, Message.id == "grown-7", tenants={tenant_id})
    assert found is not None and found.message.status == "delivered"


def test_the_statement_is_kept_prepared(client, runtime, monkeypatch):
    """Planning the statement cost PostgreSQL 0.25 ms of CPU per report: it is a prepared statement, and
    PostgreSQL keeps its generic plan (its first five runs are planned for their values), until the
    connection prepares it anew. A statement whose estimates hung on a parameter (a LIMIT of the batch's
    count) was planned anew at every run even so."""
    monkeypatch.setattr(prepared, "REPLAN_SECONDS", 3600.0)
    for n in range(30):
        assert post_standard(client, status_body(f"m-plan-{n}", "sent")).status_code == 200

    def plans(connection: sa.Connection) -> list[tuple[int, int]]:
        listed = "SELECT generic_plans, custom_plans FROM pg_prepared_statements WHERE statement LIKE %(text)s"
        return [tuple(row) for row in connection.exec_driver_sql(listed, {"text": "%INSERT INTO status_events%"})]

    [(generic, custom)] = runtime.db.group_commit.run(plans)
    assert custom <= 5 and generic >= 20


@pytest.mark.parametrize("plan_cache_mode", ["force_custom_plan", "force_generic_plan"])
def test_the_statement_finds_messages_by_index_and_is_never_compiled(client, runtime, monkeypatch, plan_cache_mode):
    """The statement reads and updates messages by their key and seq, not by scanning the table. And its
    estimated cost stays far below PostgreSQL's `jit_above_cost` (100,000): planned with
    `jsonb_array_elements`' default estimate (100 rows a call, 10,000 for the reports of 100 webhooks),
    it passed that line, and PostgreSQL compiled the plan with LLVM at every run, 40-60 ms of CPU for a
    statement that runs in one (its LIMITs tell the planner the most a batch holds, `MAX_REPORTS`)."""
    assert post_standard(client, status_body("m-first", "sent")).status_code == 200
    given: list[dict] = []

    class Recorded:
        def run(self, connection, values):
            given.append(values)
            return statement.run(connection, values)

    statement = postgres_reports.INSERT_REPORTS
    monkeypatch.setattr(postgres_reports, "INSERT_REPORTS", Recorded())
    assert post_standard(client, status_body("m-first", "delivered")).status_code == 200
    [parameters] = given
    statement_text = str(sa.text(postgres_reports._STATEMENT).compile(dialect=runtime.db.engine.dialect))
    with runtime.db.engine.connect() as connection, connection.begin():
        # A deployment's table, whose statistics the planner reads: on a small one any scan is cheap.
        without_statement_timeout(connection)
        connection.exec_driver_sql(
            "INSERT INTO messages (id, tenant_id, provider, connection, provider_message_id, direction, to_numbers,"
            " has_content, received_at, updated_at, extra)"
            " SELECT 'filler-' || n, tenant_id, provider, connection, 'filler-' || n, 'outbound', '[]', false,"
            " received_at, updated_at, '{}' FROM messages, generate_series(1, 50000) AS n"
        )
        connection.exec_driver_sql("ANALYZE messages")
        connection.exec_driver_sql(f"SET LOCAL plan_cache_mode = {plan_cache_mode}")
        [estimate] = connection.exec_driver_sql(f"EXPLAIN (FORMAT JSON) {statement_text}", parameters).scalar_one()
        lines = connection.exec_driver_sql(f"EXPLAIN {statement_text}", parameters).scalars().all()
        connection.rollback()
    assert estimate["Plan"]["Total Cost"] < 10_000
    on_messages = [line.strip().removeprefix("->  ") for line in lines if "Scan" in line and " on messages" in line]
    assert on_messages, lines
    by_index = ("Index Scan using uq_messages", "Index Scan using pk_messages")
    assert all(line.startswith(by_index) for line in on_messages), on_messages
