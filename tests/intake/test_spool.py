"""The spool: a verified webhook that arrives while the database cannot be reached is kept on this host's
disk, fsynced, and acknowledged as the provider expects; the drainer stores it once the database answers,
through the intake's own path, with its own arrival time and request id, once.

Each test has two runtimes over one data directory (so one spool): `down`, whose database refuses every
connection (a PostgreSQL port nothing listens on), receives the webhooks; `runtime`, on the test's real
SQLite or PostgreSQL database, drains them, as a process of the same host does once the database is
back (tests/support/spool.py). The bad inputs the spool must survive are here too: a record cut off by a crash, a connection
removed before draining, a full disk, the same webhook spooled twice, a drain that starts over."""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import urlencode

import pytest
import sqlalchemy as sa

from tests.fixtures.app import TENANT_A, TENANT_B, USER_A, base_test_config
from tests.providers.security_suite import count
from tests.support.scratch_space import fill_scratch_space
from tests.support.small_filesystem import small_filesystem
from tests.support.spool import drain, file_key, runtime_like, spool_files, spooled_request, unreachable_database_url
from tests.support.standard import inbound_body, post_standard, standard_headers, status_body
from tests.support.twilio import inbound_params
from tests.support.unsigned_connections import unsigned_connections
from webhook_service.app import create_app
from webhook_service.database.tables import (
    Attachment,
    FeedEvent,
    Message,
    QuarantinedRequest,
    RawRequest,
    RequestLogEntry,
    StatusEventRow,
)
from webhook_service.intake.spool_format import FILE_HEADER_BYTES, FILE_MAGIC, GENERATION_BYTES, encode
from webhook_service.providers import ADAPTERS
from webhook_service.runtime import Runtime

AUTH_A = {"Authorization": "Basic " + base64.b64encode(":".join(USER_A).encode()).decode()}
# The development connections of every other adapter (standard/open is in the base configuration).
UNSIGNED = [connection for connection in unsigned_connections() if connection["provider"] != "standard"]


@pytest.fixture
def settings_overrides(tmp_path) -> dict:
    return {"connections": [*base_test_config(tmp_path, "")["connections"], *UNSIGNED]}


SMALL_SPOOL_BYTES = 4000


@pytest.fixture
def small_spool(settings):
    """The service while its database refuses every connection, with room in its spool for a few requests."""
    runtime = runtime_like(settings, spool_max_bytes=SMALL_SPOOL_BYTES, database_url=unreachable_database_url())
    yield SimpleNamespace(runtime=runtime, client=create_app(runtime=runtime).test_client())
    runtime.close()


def _spool_file(runtime: Runtime) -> Path:
    """The spool's one file (these tests spool less than a segment)."""
    [path] = spool_files(runtime)
    return path


def _as_a_killed_drainer_left_it(runtime: Runtime, path: Path, saved: bytes) -> None:
    """The spool file as it was before a drain, and nothing noted as drained: a drainer killed after
    storing everything, before noting any of it."""
    path.write_bytes(saved)
    runtime.spool.mark_drained(saved[len(FILE_MAGIC) : len(FILE_MAGIC) + GENERATION_BYTES], FILE_HEADER_BYTES)


def _raw_requests(runtime) -> list[RawRequest]:
    with runtime.db.reading() as session:
        return list(session.scalars(sa.select(RawRequest).order_by(RawRequest.id)))


def _stored_message_ids(runtime) -> list[str]:
    with runtime.db.reading() as session:
        return list(session.scalars(sa.select(Message.provider_message_id).order_by(Message.seq)))


def _twilio_form(message_sid: str) -> bytes:
    return urlencode(inbound_params(message_sid)).encode()


def _approvedcontact_body(message_id: str, kind: str = "inbound") -> bytes:
    return json.dumps({"messageId": message_id, "type": kind, "from": "+15550001111", "message": "hi"}).encode()


# (provider, connection, body for a message id, content type, headers): one real request of each kind of
# acknowledgement providers expect (empty, TwiML, JSON).
ACKNOWLEDGED = {
    "standard": ("open", lambda m: inbound_body(m), "application/json", {}),
    "twilio": ("open", _twilio_form, "application/x-www-form-urlencoded", {}),
    "approvedcontact": ("open", _approvedcontact_body, "application/json", {"X-AC-WebhookEvent": "MessageReceived"}),
}


def _post(client, provider: str, message_id: str):
    connection, body, content_type, headers = ACKNOWLEDGED[provider]
    return client.post(
        f"/webhooks/{provider}/{connection}", data=body(message_id), headers=headers, content_type=content_type
    )


class TestSpooling:
    def test_a_webhook_is_acknowledged_during_the_outage_and_stored_once_the_database_is_back(self, down, runtime):
        before = datetime.now(UTC)
        body = inbound_body("m-spool", attachments=[{"url": "https://cdn.example.com/a.jpg"}])
        response = post_standard(down.client, body)
        arrived_by = datetime.now(UTC)
        assert response.status_code == 200, response.get_data(as_text=True)
        request_id = response.headers["X-Request-Id"]
        assert count(runtime, Message) == 0 and _spool_file(runtime).exists()

        report = drain(runtime)
        assert report.outcomes == {"accepted": 1} and report.finished
        [raw] = _raw_requests(runtime)
        assert raw.request_id == request_id and raw.body == body
        assert before <= raw.received_at <= arrived_by  # its arrival, not the drain's time
        with runtime.db.reading() as session:
            message = session.scalars(sa.select(Message)).one()
            assert message.received_at == raw.received_at and message.raw_request_id == raw.id
            assert session.scalars(sa.select(Attachment.status)).all() == ["pending"]
            assert session.scalars(sa.select(FeedEvent.type)).all() == ["message.received"]
        # Stored means gone from the spool: the file is removed, and nothing is left to drain.
        assert spool_files(runtime) == []
        assert runtime.spool.status().depth == 0
        assert drain(runtime).outcomes == {}

    @pytest.mark.parametrize("provider", sorted(ACKNOWLEDGED))
    def test_the_acknowledgement_is_the_one_the_provider_gets_for_a_stored_webhook(self, provider, down, client):
        spooled, stored = _post(down.client, provider, "ack-1"), _post(client, provider, "ack-2")
        assert (spooled.status_code, stored.status_code) == (200, 200)
        assert spooled.get_data() == stored.get_data()
        assert spooled.headers["Content-Type"] == stored.headers["Content-Type"]

    def test_a_spooled_request_is_parsed_again_but_not_verified_again(self, down, settings):
        """Its signature was checked on arrival; by the time the drainer stores it, the signature's
        timestamp may have expired, or the secret been rotated. Here the secret is replaced outright."""
        assert post_standard(down.client, inbound_body("m-verified")).status_code == 200
        connections = [
            {**connection, "secrets": ["whsec_" + base64.b64encode(b"a different secret!!").decode()]}
            if connection["name"] == "main"
            else connection
            for connection in settings.model_dump(mode="json")["connections"]
        ]
        rotated = runtime_like(settings, connections=connections)
        try:
            assert drain(rotated).outcomes == {"accepted": 1}
            assert _stored_message_ids(rotated) == ["m-verified"]
        finally:
            rotated.close()

    def test_requests_are_stored_in_the_order_they_arrived(self, down, runtime):
        ids = [f"m-order-{n}" for n in range(6)]
        for message_id in ids:
            assert post_standard(down.client, inbound_body(message_id)).status_code == 200
        assert drain(runtime).outcomes == {"accepted": 6}
        assert _stored_message_ids(runtime) == ids
        times = [raw.received_at for raw in _raw_requests(runtime)]
        assert times == sorted(times)

    def test_the_same_webhook_spooled_twice_is_stored_once(self, down, runtime):
        """The provider retried (or its first try timed out on our side) during the outage."""
        body = inbound_body("m-twice", attachments=[{"url": "https://cdn.example.com/a.jpg"}])
        headers = standard_headers(body, webhook_id="msg_twice")
        for _ in range(2):
            response = down.client.post(
                "/webhooks/standard/main", data=body, headers=headers, content_type="application/json"
            )
            assert response.status_code == 200
        assert drain(runtime).outcomes == {"accepted": 1, "duplicate": 1}
        for table in (Message, RawRequest, Attachment, FeedEvent):
            assert count(runtime, table) == 1, table

    def test_a_drain_that_starts_over_stores_nothing_twice(self, down, runtime):
        """A drainer killed after storing requests but before noting it finds them stored: a message, a
        status report, and a request that carries no event at all (only its raw request is stored)."""
        assert post_standard(down.client, inbound_body("m-again")).status_code == 200
        assert post_standard(down.client, status_body("m-again", "delivered")).status_code == 200
        assert _post(down.client, "approvedcontact", "sys-1").status_code == 200  # no event: see below
        response = down.client.post(
            "/webhooks/approvedcontact/open",
            data=_approvedcontact_body("sys-2", kind="system"),
            headers={"X-AC-WebhookEvent": "MessageReceived"},
            content_type="application/json",
        )
        assert response.status_code == 200
        path = _spool_file(runtime)
        saved = path.read_bytes()
        assert drain(runtime).outcomes == {"accepted": 4}
        stored = {table: count(runtime, table) for table in (RawRequest, Message, StatusEventRow, FeedEvent)}
        assert stored[RawRequest] == 4

        _as_a_killed_drainer_left_it(runtime, path, saved)
        assert drain(runtime).outcomes == {"duplicate": 4}
        assert {table: count(runtime, table) for table in stored} == stored

    def test_a_drain_while_the_database_is_still_down_loses_nothing(self, down, runtime, caplog):
        caplog.set_level(logging.INFO, logger="webhook_service")
        assert post_standard(down.client, inbound_body("m-wait")).status_code == 200
        assert drain(down.runtime).outcomes == {}
        assert down.runtime.spool.status().depth == 1
        # The log says what waits, and since when.
        [waiting] = [r.fields for r in caplog.records if r.getMessage() == "spool_waiting"]
        assert waiting["depth"] == 1 and waiting["oldest_age_seconds"] > 0 and waiting["bytes"] > 0

        assert drain(runtime).outcomes == {"accepted": 1}
        [drained] = [r.fields for r in caplog.records if r.getMessage() == "spool_drained"]
        assert (drained["outcomes"], drained["depth_before"], drained["depth"]) == ({"accepted": 1}, 1, 0)
        [stored] = [r.fields for r in caplog.records if r.getMessage() == "spooled_request_stored"]
        assert stored["outcome"] == "accepted" and stored["provider"] == "standard"

    def test_one_drainer_at_a_time(self, down, runtime):
        assert post_standard(down.client, inbound_body("m-one")).status_code == 200
        with down.runtime.spool.drain_turn() as mine:
            assert mine
            assert runtime.spool_drainer.drain() is None  # another process (here: runtime) drains
        assert drain(runtime).outcomes == {"accepted": 1}

    def test_readyz_and_metrics_report_the_spool(self, down, runtime):
        for message_id in ("m-ready-1", "m-ready-2"):
            assert post_standard(down.client, inbound_body(message_id)).status_code == 200
        ready = down.client.get("/readyz")
        # The database is down, but webhooks are still taken: a load balancer must keep sending them.
        assert ready.status_code == 200, ready.get_json()
        body = ready.get_json()
        assert body["status"] == "degraded" and body["checks"]["database"].startswith("unavailable")
        assert body["spool"]["depth"] == 2 and body["spool"]["accepting"] is True
        assert body["spool"]["oldestAgeSeconds"] > 0 and body["spool"]["bytes"] > FILE_HEADER_BYTES
        metrics = down.client.get("/metrics").get_data(as_text=True)
        assert "webhook_spool_depth 2.0" in metrics
        drain(runtime)
        after = down.client.get("/readyz").get_json()["spool"]
        assert (after["depth"], after["oldestAgeSeconds"], after["bytes"]) == (0, 0, 0)
        assert "webhook_spool_depth 0.0" in down.client.get("/metrics").get_data(as_text=True)

    def test_without_a_spool_an_outage_is_a_503(self, settings):
        off = runtime_like(settings, spool_max_bytes=0, database_url=unreachable_database_url())
        try:
            client = create_app(runtime=off).test_client()
            response = post_standard(client, inbound_body("m-off"))
            assert response.status_code == 503 and response.headers["Retry-After"]
            assert client.get("/readyz").status_code == 503
            assert not off.settings.spool_dir.exists()
        finally:
            off.close()


class TestBadInput:
    def _torn_record(self, runtime: Runtime, message_id: str) -> bytes:
        """The first half of a record, as a writer killed in the middle of its write leaves it."""
        record = encode(spooled_request(message_id, request_id="torn"), file_key(_spool_file(runtime)))
        return record[: len(record) // 2]

    def test_a_record_cut_off_by_a_crash_is_set_aside_and_the_rest_drains(self, down, runtime, caplog):
        caplog.set_level(logging.INFO, logger="webhook_service")
        assert post_standard(down.client, inbound_body("m-before")).status_code == 200
        torn = self._torn_record(runtime, "m-torn")
        with _spool_file(runtime).open("ab") as spool_file:
            spool_file.write(torn)
        # Writers append after the torn record, as they do once its writer has died.
        assert post_standard(down.client, inbound_body("m-after")).status_code == 200
        assert runtime.spool.status().depth == 2

        report = drain(runtime)
        assert report.outcomes == {"accepted": 2} and report.set_aside == 1 and report.finished
        assert _stored_message_ids(runtime) == ["m-before", "m-after"]
        [kept] = list((runtime.settings.spool_dir / "damaged").iterdir())
        assert kept.read_bytes() == torn
        [line] = [r for r in caplog.records if r.getMessage() == "spool_record_damaged"]
        assert line.fields["bytes"] == len(torn) and line.fields["kept_as"] == str(kept)

    def test_a_record_cut_off_at_the_end_of_the_file_is_set_aside(self, down, runtime):
        assert post_standard(down.client, inbound_body("m-last")).status_code == 200
        torn = self._torn_record(runtime, "m-torn-tail")
        with _spool_file(runtime).open("ab") as spool_file:
            spool_file.write(torn)
        report = drain(runtime)
        assert report.outcomes == {"accepted": 1} and report.set_aside == 1 and report.finished
        assert _stored_message_ids(runtime) == ["m-last"]
        assert spool_files(runtime) == []

    def test_a_request_whose_connection_was_removed_is_quarantined_with_that_reason(self, down, settings):
        body = inbound_body("m-orphan")
        response = post_standard(down.client, body)
        assert response.status_code == 200
        remaining = [c for c in settings.model_dump(mode="json")["connections"] if c["name"] != "main"]
        reconfigured = runtime_like(settings, connections=remaining)
        try:
            path = _spool_file(reconfigured)
            saved = path.read_bytes()
            assert drain(reconfigured).outcomes == {"quarantined": 1}
            # A drainer killed before noting so: the request is in quarantine once.
            _as_a_killed_drainer_left_it(reconfigured, path, saved)
            assert drain(reconfigured).outcomes == {"duplicate": 1}
            assert count(reconfigured, Message) == 0
            with reconfigured.db.reading() as session:
                entry = session.scalars(sa.select(QuarantinedRequest)).one()
            assert (entry.provider, entry.connection, entry.reason_code) == ("standard", "main", "connection_removed")
            assert entry.body == body and entry.request_id == response.headers["X-Request-Id"]
            assert entry.http_status == 200  # what the provider was answered
            assert "standard/main is no longer configured" in entry.reason
            assert spool_files(reconfigured) == []
            # The operator finds it in the request log too, once, with its quarantine entry.
            with reconfigured.db.reading() as session:
                [logged] = session.scalars(sa.select(RequestLogEntry)).all()
            assert (logged.outcome, logged.http_status, logged.reason_code, logged.quarantine_id) == (
                "quarantined",
                200,
                "connection_removed",
                entry.id,
            )
            assert logged.request_id == entry.request_id and logged.body_bytes == len(body)
        finally:
            reconfigured.close()

    def test_a_request_stored_before_its_connection_was_removed_is_not_quarantined_when_met_again(
        self, down, runtime, settings
    ):
        """Stored by a drainer that stopped before noting so; the connection is removed before a drainer
        meets the request again: it is stored already, and passed as such, not quarantined as
        `connection_removed`."""
        assert post_standard(down.client, inbound_body("m-stored")).status_code == 200
        path = _spool_file(runtime)
        saved = path.read_bytes()
        assert drain(runtime).outcomes == {"accepted": 1}
        remaining = [c for c in settings.model_dump(mode="json")["connections"] if c["name"] != "main"]
        reconfigured = runtime_like(settings, connections=remaining)
        try:
            _as_a_killed_drainer_left_it(reconfigured, path, saved)
            assert drain(reconfigured).outcomes == {"duplicate": 1}
            assert count(reconfigured, QuarantinedRequest) == 0 and count(reconfigured, Message) == 1
            assert spool_files(reconfigured) == []
        finally:
            reconfigured.close()

    def test_a_request_whose_connection_moved_to_another_tenant_is_quarantined(self, down, settings):
        """Tenant A's connection is given to tenant B before the drain: stored through the connection as it
        is now, A's message would be B's. It is kept in quarantine under A, for an operator to decide."""
        response = post_standard(down.client, inbound_body("m-moved"))
        assert response.status_code == 200
        moved = [
            {**connection, "tenant": TENANT_B} if connection["name"] == "main" else connection
            for connection in settings.model_dump(mode="json")["connections"]
        ]
        reconfigured = runtime_like(settings, connections=moved)
        try:
            assert drain(reconfigured).outcomes == {"quarantined": 1}
            assert count(reconfigured, Message) == count(reconfigured, RawRequest) == 0
            with reconfigured.db.reading() as session:
                entry = session.scalars(sa.select(QuarantinedRequest)).one()
                [logged] = session.scalars(sa.select(RequestLogEntry)).all()
            assert (entry.reason_code, entry.tenant_id, entry.http_status) == ("tenant_changed", TENANT_A, 200)
            assert f"now belongs to tenant {TENANT_B}, not to tenant {TENANT_A}" in entry.reason
            assert (logged.tenant_id, logged.outcome, logged.quarantine_id) == (TENANT_A, "quarantined", entry.id)
        finally:
            reconfigured.close()

    def test_an_adapter_error_while_draining_quarantines_that_request_and_the_drain_goes_on(
        self, down, runtime, monkeypatch
    ):
        for message_id in ("m-fine-1", "m-bug", "m-fine-2"):
            assert post_standard(down.client, inbound_body(message_id)).status_code == 200
        adapter = ADAPTERS["standard"]
        parse = adapter.parse

        def parse_with_a_bug(request, connection):
            if b"m-bug" in request.body:
                raise KeyError("a bug")
            return parse(request, connection)

        monkeypatch.setattr(adapter, "parse", parse_with_a_bug)
        assert drain(runtime).outcomes == {"accepted": 2, "quarantined": 1}
        assert _stored_message_ids(runtime) == ["m-fine-1", "m-fine-2"]
        with runtime.db.reading() as session:
            entry = session.scalars(sa.select(QuarantinedRequest)).one()
        assert entry.reason_code == "adapter_error" and "KeyError" in entry.reason

    def test_a_full_disk_is_a_503_and_nothing_unwritten_is_acknowledged(self, down, runtime, monkeypatch):
        spool_dir = runtime.settings.spool_dir
        with small_filesystem(spool_dir, 64 * 1024) as mounted:
            if not mounted:
                # Without a volume of our own, every file made in the spool directory fails its writes as
                # on a full disk (an injected failure at the file boundary).
                fill_scratch_space(monkeypatch, spool_dir)
            answers = {}
            for n in range(200):
                message_id = f"m-disk-{n}"
                answers[message_id] = post_standard(down.client, inbound_body(message_id, text="x" * 2000))
                if answers[message_id].status_code != 200:
                    break
            refused = answers[message_id]
            assert refused.status_code == 503, "the disk never filled"
            assert refused.headers["Retry-After"] and refused.get_json()["error"]["code"] == "unavailable"
            acknowledged = [m for m, answer in answers.items() if answer.status_code == 200]
            if mounted:
                assert acknowledged, "nothing fit on the volume"
            monkeypatch.undo()
            report = drain(runtime)
        # Exactly what was acknowledged is stored: no torn record was left behind by the failed write.
        assert report.set_aside == 0 and report.finished
        assert _stored_message_ids(runtime) == acknowledged

    def test_past_its_budget_the_spool_takes_nothing_more(self, small_spool, runtime, caplog):
        caplog.set_level(logging.INFO, logger="webhook_service")
        statuses = [post_standard(small_spool.client, inbound_body(f"m-budget-{n}")).status_code for n in range(20)]
        assert 200 in statuses and 503 in statuses
        assert statuses == sorted(statuses)  # once full, full until drained
        assert small_spool.runtime.spool.status().bytes <= SMALL_SPOOL_BYTES
        reasons = {r.fields["reason"] for r in caplog.records if r.getMessage() == "spool_unavailable"}
        assert reasons == {"spool_full"}
        assert small_spool.client.get("/readyz").status_code == 503  # full, the database down: go elsewhere
        assert drain(runtime).outcomes == {"accepted": statuses.count(200)}

    def test_a_spool_directory_that_cannot_be_made_is_a_503(self, down, runtime):
        data_dir = runtime.settings.data_dir
        data_dir.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(runtime.settings.spool_dir, ignore_errors=True)
        runtime.settings.spool_dir.write_bytes(b"not a directory")
        response = post_standard(down.client, inbound_body("m-nowhere"))
        assert response.status_code == 503 and response.headers["Retry-After"]


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
class TestWritesThatTimeOut:
    """A database that answers but cannot take a spooled request's write (a statement cancelled by
    statement_timeout behind a lock; on SQLite a locked file stops the request log's row too, so nothing
    is written there either way)."""

    @pytest.fixture
    def settings_overrides(self):
        return {"database": {"statement_timeout_seconds": 0.5}}

    @contextlib.contextmanager
    def _writes_time_out(self, settings) -> Iterator[None]:
        """Writes to raw_requests wait for a lock past statement_timeout; reads go on."""
        locker = sa.create_engine(settings.database_url, poolclass=sa.pool.NullPool)
        try:
            with locker.begin() as connection:
                connection.exec_driver_sql("LOCK TABLE raw_requests IN EXCLUSIVE MODE")
                yield
        finally:
            locker.dispose()

    def test_a_drain_that_cannot_write_a_request_does_not_log_it_as_answered_503(self, down, runtime, settings):
        """The request was answered 200 when it was spooled: the request log (and the overview's counts)
        must say so once it is stored, not that it was refused at each pass that could not store it."""
        response = post_standard(down.client, inbound_body("m-timeout"))
        assert response.status_code == 200
        with self._writes_time_out(settings):
            for _ in range(2):  # two of the drainer's passes, a second apart
                assert drain(runtime).outcomes == {}
        assert drain(runtime).outcomes == {"accepted": 1}
        with runtime.db.reading() as session:
            rows = session.execute(sa.select(RequestLogEntry.outcome, RequestLogEntry.http_status)).all()
        assert [tuple(row) for row in rows] == [("accepted", 200)]

    def test_an_operator_replay_that_cannot_be_written_is_answered_503_not_spooled(self, client, runtime, settings):
        """The operator is there to see the 503 and replay again; spooled, the replay would be reported as
        done (the entry resolved) before anything was stored."""
        post_standard(client, inbound_body("m-replayed"), secret="wrong")  # refused, kept in quarantine
        with runtime.db.reading() as session:
            entry_id = session.scalars(sa.select(QuarantinedRequest.id)).one()
        with self._writes_time_out(settings):
            result = runtime.intake.replay(entry_id, trust=True)
        assert result is not None and (result.status, result.outcome) == (503, "unavailable")
        assert spool_files(runtime) == []
        with runtime.db.reading() as session:
            assert session.get(QuarantinedRequest, entry_id).resolution is None
            replay_row = session.scalars(sa.select(RequestLogEntry).where(RequestLogEntry.replay_of == entry_id)).one()
        assert (replay_row.outcome, replay_row.http_status) == ("unavailable", 503)
