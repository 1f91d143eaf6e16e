"""The request log: one row per webhook request whatever its outcome, written with the raw request or the
quarantine entry, linked to what it produced, with its secrets redacted, under the request id the JSON
log line and the X-Request-Id header carry."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.fixtures.app import TENANT_A, base_test_config
from tests.providers.security_suite import count
from tests.support.standard import inbound_body, post_standard, standard_headers, status_body
from webhook_service.database import request_counts
from webhook_service.database.tables import Message, QuarantinedRequest, RawRequest, RequestCount, RequestLogEntry
from webhook_service.intake import request_log
from webhook_service.intake.retention import prune_requests


def _entries(runtime) -> list[RequestLogEntry]:
    with runtime.db.reading() as session:
        return list(session.scalars(sa.select(RequestLogEntry).order_by(RequestLogEntry.id)))


def test_an_accepted_request_links_its_raw_request_and_what_it_produced(client, runtime):
    response = post_standard(client, inbound_body("rl-1", sender="+1 (555) 000-1111"))
    assert response.status_code == 200
    [entry] = _entries(runtime)
    with runtime.db.reading() as session:
        raw = session.scalars(sa.select(RawRequest)).one()
        message = session.scalars(sa.select(Message)).one()
    assert entry.request_id == response.headers["X-Request-Id"] == raw.request_id
    assert (entry.outcome, entry.http_status, entry.reason_code) == ("accepted", 200, None)
    assert (entry.provider, entry.connection, entry.tenant_id) == ("standard", "main", message.tenant_id)
    assert entry.raw_request_id == raw.id and entry.quarantine_id is None
    assert entry.message_ids == [message.id] and entry.provider_message_ids == ["rl-1"]
    assert sorted(entry.addresses) == ["+15550001111", "+15551234567"]
    assert entry.headers is None  # the raw request keeps them
    assert entry.body_bytes == len(raw.body) and entry.latency_ms is not None and entry.latency_ms >= 0
    assert entry.received_at == raw.received_at


def test_a_duplicate_is_logged_with_its_redacted_headers_and_no_second_raw_request(client, runtime):
    body = inbound_body("rl-dup")
    headers = standard_headers(body)
    for _ in range(2):
        response = client.post(
            "/webhooks/standard/main",
            data=body,
            headers={**headers, "Authorization": "Bearer sekrit"},
            content_type="application/json",
        )
        assert response.status_code == 200
    first, second = _entries(runtime)
    assert (first.outcome, second.outcome) == ("accepted", "duplicate")
    assert second.raw_request_id is None and second.message_ids == first.message_ids
    assert count(runtime, RawRequest) == 1 and count(runtime, Message) == 1
    kept = dict(second.headers)
    assert kept["Authorization"] == "[redacted]" and kept["Webhook-Signature"] == "[redacted]"
    assert kept["Webhook-Id"] == headers["webhook-id"]


def test_a_status_report_logs_the_message_it_moved(client, runtime):
    post_standard(client, inbound_body("rl-out"))
    assert post_standard(client, status_body("rl-out", "delivered")).status_code == 200
    entries = _entries(runtime)
    assert entries[1].outcome == "accepted" and entries[1].message_ids == entries[0].message_ids


def test_refusals_are_logged_with_their_quarantine_entry(client, runtime):
    unsigned = post_standard(client, inbound_body("rl-401"), secret="wrong")
    unreadable = post_standard(client, b'{"type":"message.received","data":{')
    too_large = post_standard(client, b"x" * (runtime.settings.webhook_max_body_bytes + 1))
    assert [r.status_code for r in (unsigned, unreadable, too_large)] == [401, 400, 413]
    with runtime.db.reading() as session:
        quarantined = {q.request_id: q for q in session.scalars(sa.select(QuarantinedRequest))}
    entries = _entries(runtime)
    assert [(e.outcome, e.http_status) for e in entries] == [
        ("unauthorized", 401),
        ("bad_request", 400),
        ("too_large", 413),
    ]
    for entry, response in zip(entries, (unsigned, unreadable, too_large), strict=True):
        assert entry.request_id == response.headers["X-Request-Id"]
        assert entry.quarantine_id == quarantined[entry.request_id].id
        assert entry.reason_code == quarantined[entry.request_id].reason_code
        assert entry.raw_request_id is None and entry.message_ids == [] and entry.headers is None
    assert entries[0].reason_code == "invalid_signature"
    assert entries[2].body_bytes is None  # never read


def test_an_unknown_endpoint_is_logged_with_every_secret_looking_header_redacted(client, runtime):
    response = client.post(
        "/webhooks/nosuch/main?token=abc&x=1",
        data=b"{}",
        headers={"Authorization": "Basic Zm9vOmJhcg==", "X-Api-Key": "k-123", "X-Twilio-Signature": "sig", "X-Ok": "1"},
        content_type="application/json",
    )
    assert response.status_code == 404
    [entry] = _entries(runtime)
    assert (entry.outcome, entry.reason_code, entry.tenant_id) == ("not_found", "unknown_provider", None)
    assert entry.request_id == response.headers["X-Request-Id"]
    assert entry.url == "/webhooks/nosuch/main"  # the query string, which may carry a token, is not kept
    kept = dict(entry.headers)
    assert kept["Authorization"] == kept["X-Api-Key"] == kept["X-Twilio-Signature"] == "[redacted]"
    assert kept["X-Ok"] == "1"
    assert client.post("/webhooks/standard/nosuch", data=b"{}").status_code == 404
    assert _entries(runtime)[1].reason_code == "unknown_connection"


def test_headers_a_row_keeps_itself_are_bounded(client, runtime):
    headers = {f"X-Filler-{number}": "v" * 1000 for number in range(40)}
    assert client.post("/webhooks/nosuch", data=b"", headers=headers).status_code == 404
    [entry] = _entries(runtime)
    assert sum(len(name) + len(value) for name, value in entry.headers) < 18 * 1024
    assert entry.headers[-1][1].startswith("further headers not kept")


def test_a_replay_is_logged_as_the_replay_of_its_entry(client, runtime):
    body = inbound_body("rl-replay")
    # Refused under a wrong secret; the operator vouches for it.
    post_standard(client, body, secret="wrong")
    with runtime.db.reading() as session:
        entry_id = session.scalars(sa.select(QuarantinedRequest.id)).one()
    assert runtime.intake.replay(entry_id, trust=True).status == 200
    refused, replayed = _entries(runtime)
    assert replayed.replay_of == entry_id and replayed.outcome == "accepted" and replayed.latency_ms is None
    assert replayed.received_at == refused.received_at and replayed.message_ids


def test_the_json_log_line_carries_the_same_request_id(client, runtime, caplog):
    caplog.set_level(logging.INFO, logger="webhook_service")
    response = post_standard(client, inbound_body("rl-log"))
    [line] = [r for r in caplog.records if r.getMessage() == "webhook"]
    [entry] = _entries(runtime)
    assert entry.request_id == response.headers["X-Request-Id"] == line.fields["request_id"]


def test_every_row_is_counted_per_minute_for_the_overview(client, runtime):
    post_standard(client, inbound_body("c-1"))
    post_standard(client, inbound_body("c-1"))
    post_standard(client, inbound_body("c-2"), secret="wrong")
    client.post("/webhooks/nosuch", data=b"{}")
    # The counts reach the table a second after the first one, without anyone asking.
    tenant = runtime.settings.connections[0].tenant
    expected = {("accepted", tenant): 1, ("duplicate", tenant): 1, ("unauthorized", tenant): 1, ("not_found", ""): 1}
    deadline = time.monotonic() + request_counts.FLUSH_SECONDS + 5
    while True:
        with runtime.db.reading() as session:
            rows = session.execute(sa.select(RequestCount.outcome, RequestCount.tenant_id, RequestCount.count)).all()
        totals = {(outcome, tenant): count for outcome, tenant, count in rows}
        if totals == expected or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert totals == expected
    since = datetime.now(UTC) - timedelta(hours=1)
    assert sum(row[4] for row in request_counts.counted(runtime.db, tenants={tenant}, since=since)) == 3
    assert sum(row[4] for row in request_counts.counted(runtime.db, tenants=None, since=since)) == 4
    # Pruned with the log.
    prune_requests(runtime.db, datetime.now(UTC) + timedelta(minutes=2))
    assert request_counts.counted(runtime.db, tenants=None, since=since) == []


def test_a_flood_of_requests_to_unknown_urls_is_counted_but_not_all_written(client, runtime, monkeypatch):
    # A budget of 5 rows whose clock stands still: the sixth request on is only counted.
    monkeypatch.setattr(request_log, "_unknown_endpoint_rows", request_log._Budget(5, clock=lambda: 0.0))
    for _ in range(25):
        assert client.post("/webhooks/flood", data=b"{}").status_code == 404
    assert len(_entries(runtime)) == 5
    since = datetime.now(UTC) - timedelta(hours=1)
    assert [row[3:] for row in request_counts.counted(runtime.db, tenants=None, since=since)] == [("not_found", 25)]


def test_the_remote_address_is_logged(client, runtime):
    body = inbound_body("rl-addr")
    client.post(
        "/webhooks/standard/main",
        data=body,
        headers=standard_headers(body),
        content_type="application/json",
        environ_base={"REMOTE_ADDR": "203.0.113.9"},
    )
    client.post("/webhooks/nosuch", data=b"{}", environ_base={"REMOTE_ADDR": "198.51.100.7"})
    assert [entry.remote_addr for entry in _entries(runtime)] == ["203.0.113.9", "198.51.100.7"]


# A connection of the mapping adapter whose token travels in a header, and one whose token travels in the
# query string, under names no generic rule takes for a secret: only the adapter knows they are.
MAPPING_OPTIONS = {"body_format": "json", "fields": {"message_id": "id", "from": "from", "to": "to", "text": "text"}}
MAPPING_TOKEN = "acme-token-value"


class TestMappingSecrets:
    @pytest.fixture
    def settings_overrides(self):
        own = [
            {
                "provider": "mapping",
                "name": name,
                "tenant": TENANT_A,
                "secrets": [MAPPING_TOKEN],
                "options": {**MAPPING_OPTIONS, "auth": {"kind": "token", **auth}},
            }
            for name, auth in (("in-header", {"header": "X-Acme-Pass"}), ("in-query", {"query_parameter": "hook_pass"}))
        ]
        return {"connections": [*base_test_config(Path("unused"), "sqlite://")["connections"], *own]}

    def _post(self, client, connection: str, message_id: str, token: str):
        body = {"id": message_id, "from": "+15550001111", "to": "+15551234567", "text": "hi"}
        if connection == "in-header":
            return client.post("/webhooks/mapping/in-header", json=body, headers={"X-Acme-Pass": token})
        return client.post(f"/webhooks/mapping/in-query?hook_pass={token}&x=1", json=body)

    def test_the_adapters_own_secret_header_and_query_parameter_are_redacted_everywhere(self, client, runtime):
        for connection in ("in-header", "in-query"):
            assert self._post(client, connection, f"{connection}-1", MAPPING_TOKEN).status_code == 200
            assert self._post(client, connection, f"{connection}-1", MAPPING_TOKEN).status_code == 200  # duplicate
            assert self._post(client, connection, f"{connection}-2", "a-wrong-guess").status_code == 401
        entries = _entries(runtime)
        assert [e.outcome for e in entries] == ["accepted", "duplicate", "unauthorized"] * 2
        with runtime.db.reading() as session:
            kept = [*session.scalars(sa.select(RawRequest)), *session.scalars(sa.select(QuarantinedRequest))]
        assert len(kept) == 4
        everything = repr([(row.url, row.headers) for row in kept]) + repr([(e.url, e.headers) for e in entries])
        assert MAPPING_TOKEN not in everything and "a-wrong-guess" not in everything
        header_rows = [dict(row.headers) for row in kept if "in-header" in row.url]
        assert [row["X-Acme-Pass"] for row in header_rows] == ["[redacted]", "[redacted]"]
        assert dict(entries[1].headers)["X-Acme-Pass"] == "[redacted]"  # the duplicate's own copy
        assert all("hook_pass=%5Bredacted%5D&x=1" in row.url for row in kept if "in-query" in row.url)


class TestUnavailable:
    """A database that answers but cannot take the request (here: a statement that waits for a lock past
    statement_timeout), with no spool: answered 503, and the request log keeps the row on its own."""

    @pytest.fixture
    def settings_overrides(self):
        return {"spool_max_bytes": 0, "database": {"statement_timeout_seconds": 0.5}}

    @pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
    def test_a_request_the_database_could_not_store_is_logged_unavailable(self, client, runtime, settings):
        body = inbound_body("rl-503")
        headers = {**standard_headers(body), "Authorization": "Bearer sekrit"}
        locker = sa.create_engine(settings.database_url, poolclass=sa.pool.NullPool)
        try:
            with locker.begin() as connection:
                connection.exec_driver_sql("LOCK TABLE raw_requests IN ACCESS EXCLUSIVE MODE")
                response = client.post(
                    "/webhooks/standard/main", data=body, headers=headers, content_type="application/json"
                )
        finally:
            locker.dispose()
        assert response.status_code == 503
        [entry] = _entries(runtime)
        assert (entry.outcome, entry.http_status, entry.reason_code) == ("unavailable", 503, "database_unavailable")
        assert entry.request_id == response.headers["X-Request-Id"] and entry.latency_ms is not None
        assert entry.raw_request_id is None and entry.quarantine_id is None and entry.message_ids == []
        kept = dict(entry.headers)  # nothing else keeps this request: its row keeps the headers
        assert kept["Authorization"] == kept["Webhook-Signature"] == "[redacted]"
        assert kept["Webhook-Id"] == headers["webhook-id"]
        assert count(runtime, Message) == 0
