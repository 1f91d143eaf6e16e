"""The shared intake: durable storage before 2xx, idempotency (also under concurrency), quarantine,
body cap, 404s, 503 when the database is down, and the status model."""

from __future__ import annotations

import base64
import io
import json
import threading

import pytest
import sqlalchemy as sa

from tests.fixtures.app import USER_A
from tests.providers.security_suite import count
from tests.support.standard import inbound_body, post_standard, standard_headers, status_body
from webhook_service.app import create_app
from webhook_service.database.tables import (
    Attachment,
    FeedEvent,
    Message,
    QuarantinedRequest,
    RawRequest,
    StatusEventRow,
)
from webhook_service.runtime import Runtime

AUTH_A = {"Authorization": "Basic " + base64.b64encode(":".join(USER_A).encode()).decode()}


def _messages(runtime) -> list[Message]:
    with runtime.db.reading() as session:
        return list(session.scalars(sa.select(Message).order_by(Message.seq)))


def _api_message(client, provider_message_id: str, provider: str = "standard") -> dict:
    response = client.get(f"/api/v1/providers/{provider}/messages/{provider_message_id}", headers=AUTH_A)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


class TestStorage:
    def test_inbound_message_is_stored_with_raw_request_and_pending_attachments(self, client, runtime):
        body = inbound_body(
            "m-1",
            text="Here's the photo",
            attachments=[
                {"url": "https://cdn.example.com/1.jpg", "contentType": "image/jpeg", "name": "1.jpg", "size": 9},
                {"url": "https://cdn.example.com/2.pdf", "contentType": "application/pdf"},
            ],
        )
        response = post_standard(client, body)
        assert response.status_code == 200
        assert response.headers["X-Request-Id"]
        with runtime.db.reading() as session:
            raw = session.scalars(sa.select(RawRequest)).one()
            attachments = session.scalars(sa.select(Attachment).order_by(Attachment.index)).all()
        assert raw.body == body and raw.provider == "standard" and raw.connection == "main"
        assert ["webhook-signature" in name.lower() for name, _ in raw.headers].count(True) == 1
        message = _api_message(client, "m-1")
        assert message["from"] == "+15550001111" and message["to"] == ["+15551234567"]
        assert message["status"] == "received" and message["direction"] == "inbound"
        assert [a["declaredContentType"] for a in message["attachments"]] == ["image/jpeg", "application/pdf"]
        assert {a.status for a in attachments} == {"pending"}

    def test_unicode_and_emoji_survive_exactly(self, client, runtime):
        text = "Caf\u00e9 \U0001f600\U0001f44d\U0001f3fd \u4f60\u597d \u0645\u0631\u062d\u0628\u0627 \u200d"
        assert post_standard(client, inbound_body("m-uni", text=text)).status_code == 200
        assert _api_message(client, "m-uni")["text"] == text

    def test_phone_numbers_are_normalized_to_e164(self, client):
        body = inbound_body("m-e164", sender="(555) 000-1111", to=("15551234567", "12345", "ACME"))
        assert post_standard(client, body).status_code == 200
        message = _api_message(client, "m-e164")
        # Short codes and alphanumeric senders are real addresses: kept as they are.
        assert message["from"] == "+15550001111"
        assert message["to"] == ["+15551234567", "12345", "ACME"]

    def test_a_request_with_no_events_is_kept(self, client, runtime, settings):
        # A provider event type that no adapter maps still has its raw request stored.
        from werkzeug.datastructures import Headers

        from webhook_service.providers import ADAPTERS, WebhookRequest

        class NoEvents(type(ADAPTERS["standard"])):
            def parse(self, request, connection):
                return []

        connection = runtime.connections.find("standard", "open")
        request = WebhookRequest(
            method="POST",
            url="http://localhost/webhooks/standard/open",
            headers=Headers({"Content-Type": "application/json"}),
            body=b"{}",
        )
        result = runtime.intake.process(NoEvents(), connection, request, "r-1")
        assert result.status == 200 and count(runtime, RawRequest) == 1


class TestIdempotency:
    def test_duplicate_changes_nothing(self, client, runtime):
        body = inbound_body("m-dup", attachments=[{"url": "https://cdn.example.com/1.jpg"}])
        headers = standard_headers(body, webhook_id="msg_dup")
        for _ in range(3):
            response = client.post(
                "/webhooks/standard/main", data=body, headers=headers, content_type="application/json"
            )
            assert response.status_code == 200
        assert count(runtime, Message) == 1
        assert count(runtime, Attachment) == 1
        assert count(runtime, RawRequest) == 1
        assert count(runtime, FeedEvent) == 1

    def test_each_row_points_at_the_raw_request_that_brought_it(self, client, runtime):
        """A status report first, then the message's content, then that content again (on PostgreSQL the
        raw request and the message go in one statement, whose message conflicts in both later cases)."""
        report = status_body("m-links", "sent")
        content = inbound_body("m-links", text="the content")
        for body in (report, content, content):
            assert post_standard(client, body).status_code == 200
        with runtime.db.reading() as session:
            raw_bodies = {raw.id: raw.body for raw in session.scalars(sa.select(RawRequest))}
            (status_row,) = session.scalars(sa.select(StatusEventRow)).all()
        (message,) = _messages(runtime)
        assert sorted(raw_bodies.values()) == sorted([report, content])  # the repeat left none
        assert raw_bodies[status_row.raw_request_id] == report
        assert raw_bodies[message.raw_request_id] == content
        assert message.text == "the content" and message.status == "sent"

    def test_same_webhook_twice_at_the_same_moment_on_two_workers(self, settings):
        """Two app instances (separate connection pools, like two gunicorn workers) receive the same
        webhook at once, several times over: exactly one message, one feed event, one raw request."""
        runtimes = [Runtime(settings), Runtime(settings)]
        clients = [create_app(runtime=r).test_client() for r in runtimes]
        try:
            for round_number in range(5):
                body = inbound_body(f"m-race-{round_number}", attachments=[{"url": "https://cdn.example.com/x"}])
                headers = standard_headers(body)
                barrier = threading.Barrier(len(clients))
                statuses = []

                def send(client):
                    barrier.wait()
                    statuses.append(
                        client.post(
                            "/webhooks/standard/main", data=body, headers=headers, content_type="application/json"
                        ).status_code
                    )

                threads = [threading.Thread(target=send, args=(c,)) for c in clients]
                for thread in threads:
                    thread.start()
                for thread in threads:
                    thread.join()
                assert statuses == [200, 200]
            runtime = runtimes[0]
            assert count(runtime, Message) == 5
            assert count(runtime, Attachment) == 5
            assert count(runtime, RawRequest) == 5
            assert count(runtime, FeedEvent) == 5
        finally:
            for runtime in runtimes:
                runtime.close()

    def test_parallel_status_reports_for_one_new_message(self, settings):
        runtimes = [Runtime(settings), Runtime(settings)]
        clients = [create_app(runtime=r).test_client() for r in runtimes]
        try:
            bodies = [status_body("m-par", "sent"), status_body("m-par", "delivered")]
            barrier = threading.Barrier(2)
            statuses = []

            def send(client, body):
                barrier.wait()
                statuses.append(post_standard(client, body).status_code)

            threads = [threading.Thread(target=send, args=(c, b)) for c, b in zip(clients, bodies, strict=False)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            assert statuses == [200, 200]
            messages = _messages(runtimes[0])
            assert len(messages) == 1 and messages[0].status == "delivered"
            assert count(runtimes[0], StatusEventRow) == 2
        finally:
            for runtime in runtimes:
                runtime.close()


class TestStatusModel:
    def test_status_only_moves_forward_and_history_keeps_everything(self, client):
        for status in ("queued", "sent", "delivered", "sent", "queued"):
            assert post_standard(client, status_body("m-st", status)).status_code == 200
        message = _api_message(client, "m-st")
        assert message["status"] == "delivered"
        assert [(h["status"], h["applied"]) for h in message["statusHistory"]] == [
            ("queued", True),
            ("sent", True),
            ("delivered", True),
            ("sent", False),
            ("queued", False),
        ]

    def test_terminal_states_stay_terminal_except_delivered_to_read(self, client):
        for status in ("failed", "delivered", "sent"):
            post_standard(client, status_body("m-failed", status))
        assert _api_message(client, "m-failed")["status"] == "failed"
        for status in ("delivered", "read", "undelivered"):
            post_standard(client, status_body("m-read", status))
        assert _api_message(client, "m-read")["status"] == "read"

    def test_out_of_order_reports_settle_on_the_furthest(self, client):
        for status in ("delivered", "queued", "sent", "accepted"):
            post_standard(client, status_body("m-ooo", status))
        message = _api_message(client, "m-ooo")
        assert message["status"] == "delivered"
        assert len(message["statusHistory"]) == 4

    def test_status_for_an_unknown_message_is_kept_and_attached_when_it_appears(self, client, runtime):
        response = post_standard(
            client, status_body("m-later", "delivered", provider_status="DELIVRD", error_code=None)
        )
        assert response.status_code == 200
        placeholder = _api_message(client, "m-later")
        assert placeholder["hasContent"] is False and placeholder["status"] == "delivered"
        # The message itself arrives afterwards (outbound content reported by the sender).
        body = json.dumps(
            {
                "type": "message.sent",
                "data": {
                    "providerMessageId": "m-later",
                    "from": "+15551234567",
                    "to": ["+15550001111"],
                    "text": "Your order shipped",
                },
            }
        ).encode()
        assert post_standard(client, body).status_code == 200
        message = _api_message(client, "m-later")
        assert message["id"] == placeholder["id"]
        assert message["hasContent"] is True and message["text"] == "Your order shipped"
        assert message["status"] == "delivered"
        assert [h["providerStatus"] for h in message["statusHistory"]] == ["DELIVRD"]
        assert count(runtime, Message) == 1


class TestRefusals:
    def test_unknown_provider_or_connection_is_404(self, client):
        body = inbound_body("m-404")
        assert client.post("/webhooks/nosuch", data=body, content_type="application/json").status_code == 404
        assert client.post("/webhooks/standard/nosuch", data=body, content_type="application/json").status_code == 404
        # Several standard connections and none called "default": the short URL is ambiguous.
        assert client.post("/webhooks/standard", data=body, content_type="application/json").status_code == 404

    def test_truncated_json_is_400_and_quarantined_whole(self, client, runtime):
        body = b'{"type":"message.received","data":{"providerMessageId":"m-trunc","text":"hel'
        response = post_standard(client, body)
        assert response.status_code == 400
        assert response.get_json()["error"]["code"] == "bad_request"
        with runtime.db.reading() as session:
            row = session.scalars(sa.select(QuarantinedRequest)).one()
        assert row.body == body and row.http_status == 400 and row.reason_code == "invalid_json"
        assert count(runtime, Message) == 0

    def test_form_body_sent_as_json_is_400(self, client, runtime):
        body = b"type=message.received&providerMessageId=m-form"
        response = client.post(
            "/webhooks/standard/main", data=body, headers=standard_headers(body), content_type="application/json"
        )
        assert response.status_code == 400
        assert count(runtime, QuarantinedRequest) == 1

    def test_a_2_mib_body_is_413_and_recorded_without_its_body(self, client, runtime):
        body = (
            b'{"type":"message.received","data":{"providerMessageId":"big","text":"' + b"x" * (2 * 1024 * 1024) + b'"}}'
        )
        response = post_standard(client, body)
        assert response.status_code == 413
        with runtime.db.reading() as session:
            row = session.scalars(sa.select(QuarantinedRequest)).one()
        assert row.http_status == 413 and row.body == b"" and "exceeds" in row.reason

    def test_exactly_the_cap_is_accepted(self, client, settings):
        cap = settings.webhook_max_body_bytes
        prefix = b'{"type":"message.received","data":{"providerMessageId":"cap","text":"'
        suffix = b'"}}'
        body = prefix + b"x" * (cap - len(prefix) - len(suffix)) + suffix
        assert len(body) == cap
        assert post_standard(client, body).status_code == 200

    def test_a_body_without_content_length_is_capped_while_reading(self, client, runtime):
        import io

        body = b"x" * (2 * 1024 * 1024)
        # As gunicorn presents a chunked request: no Content-Length, the stream ends where the body does.
        response = client.post(
            "/webhooks/standard/open",
            input_stream=io.BytesIO(body),
            headers={"Content-Type": "application/json", "Transfer-Encoding": "chunked"},
            environ_overrides={"wsgi.input_terminated": True},
        )
        assert response.status_code == 413

    def test_a_body_that_stops_arriving_is_400_and_recorded_without_its_body(self, client, runtime):
        class Stalled(io.BytesIO):
            """A chunked body as gunicorn presents it once the client stops sending: the web worker's
            read deadline passes (gunicorn_worker.ClientTooSlow is an OSError), or the client is gone."""

            def read(self, size: int | None = -1) -> bytes:
                raise OSError("the client sent its request too slowly")

        response = client.post(
            "/webhooks/standard/open",
            input_stream=Stalled(),
            headers={"Content-Type": "application/json", "Transfer-Encoding": "chunked"},
            environ_overrides={"wsgi.input_terminated": True},
        )
        assert response.status_code == 400 and response.get_json()["error"]["code"] == "bad_request"
        with runtime.db.reading() as session:
            row = session.scalars(sa.select(QuarantinedRequest)).one()
        assert row.http_status == 400 and row.body == b"" and "stopped arriving" in row.reason

    def test_database_down_is_503_with_retry_after(self, tmp_path):
        from tests.fixtures.app import base_test_config
        from webhook_service.settings import load_settings

        config = base_test_config(tmp_path, "postgresql+psycopg://postgres@127.0.0.1:9/nothing")
        config["spool_max_bytes"] = 0  # no spool: the outage reaches the provider (tests/intake/test_spool.py)
        runtime = Runtime(load_settings(environ={}, overrides=config))
        try:
            client = create_app(runtime=runtime).test_client()
            response = post_standard(client, inbound_body("m-503"))
            assert response.status_code == 503
            assert response.headers["Retry-After"]
            assert client.get("/readyz").status_code == 503
            assert client.get("/healthz").status_code == 200
        finally:
            runtime.close()


class TestLogs:
    def test_one_line_per_webhook_without_secrets_bodies_or_numbers(self, client, caplog):
        caplog.set_level("INFO", logger="webhook_service")
        body = inbound_body("m-log", text="the secret plan", sender="+15550009876")
        headers = standard_headers(body)
        client.post("/webhooks/standard/main", data=body, headers=headers, content_type="application/json")
        client.post(
            "/webhooks/standard/main",
            data=body,
            headers={**headers, "webhook-signature": "v1,AAAA"},
            content_type="application/json",
        )
        lines = [r for r in caplog.records if r.getMessage() == "webhook"]
        assert [r.fields["outcome"] for r in lines] == ["duplicate", "unauthorized"] or [
            r.fields["outcome"] for r in lines
        ] == ["accepted", "unauthorized"]
        from webhook_service.observability.logs import JsonFormatter

        rendered = "\n".join(JsonFormatter().format(r) for r in caplog.records)
        for secret in (
            "the secret plan",
            headers["webhook-signature"].split(",")[1],
            "whsec_",
            "+15550009876",
            "5550009876",
        ):
            assert secret not in rendered
        assert "+15*******76" in rendered  # the sender, masked
        first = json.loads(JsonFormatter().format(lines[0]))
        for field in ("request_id", "provider", "connection", "provider_message_ids", "outcome", "duration_ms"):
            assert field in first
        assert first["provider_message_ids"] == ["m-log"]


class TestUnstorableInput:
    def test_nul_and_lone_surrogates_are_replaced_and_the_raw_request_keeps_them(self, client, runtime):
        body = (
            b'{"type":"message.received","data":{"providerMessageId":"m-nul","text":"a\\u0000b\\ud800c",'
            b'"attachments":[{"url":"https://cdn.example.com/x","size":1000000000000000000000000000000}]}}'
        )
        assert post_standard(client, body).status_code == 200
        message = client.get("/api/v1/providers/standard/messages/m-nul", headers=AUTH_A).get_json()
        assert message["text"] == "a\ufffdb\ufffdc"
        with runtime.db.reading() as session:
            assert session.scalars(sa.select(RawRequest.body)).one() == body
            assert session.scalars(sa.select(Attachment.declared_size)).one() is None

    @pytest.mark.parametrize("identifier", ["", "x" * 256, "a\u0000b"])
    def test_an_unusable_message_id_is_400(self, client, identifier):
        body = json.dumps({"type": "message.received", "data": {"providerMessageId": identifier}}).encode()
        assert post_standard(client, body).status_code == 400

    def test_deeply_nested_json_is_400(self, client):
        body = b"[" * 100_000
        assert post_standard(client, body).status_code == 400


class TestAdapterBugs:
    def test_an_adapter_exception_keeps_the_request_and_answers_500(self, client, runtime, monkeypatch):
        from webhook_service.providers import ADAPTERS

        def broken(request, connection):
            raise KeyError("a bug")

        monkeypatch.setattr(ADAPTERS["standard"], "parse", broken)
        body = inbound_body("m-bug")
        response = post_standard(client, body)
        assert response.status_code == 500
        assert response.get_json()["error"]["code"] == "internal_error"
        with runtime.db.reading() as session:
            row = session.scalars(sa.select(QuarantinedRequest)).one()
        assert (row.http_status, row.reason_code, row.body) == (500, "adapter_error", body)
        assert "KeyError" in row.reason
