"""Webhook bodies that fault testing (issue 16) found answered with a 500: times whose offset moves them
out of the years a datetime holds, lone surrogates in the text a status report's dedupe key is made of,
and XML declarations that name an encoding expat cannot read. Each is either accepted or refused with a
4xx that quarantine keeps; never a 500, and never lost."""

from __future__ import annotations

import json
import time

import pytest
import sqlalchemy as sa

from tests.fixtures.app import TENANT_A
from tests.providers.security_suite import count
from tests.support.unsigned_connections import unsigned_connections, webhook_url
from tests.support.vonage import VONAGE_SIGNATURE_SECRET
from webhook_service.database.tables import Message, QuarantinedRequest, RawRequest, StatusEventRow

JSON = "application/json"
FORM = "application/x-www-form-urlencoded"
XML = "application/xml"
# An offset that moves the time out of the years 1 to 9999 once it is converted to UTC.
BEFORE_YEAR_1 = "0001-01-01T00:00:00+05:00"
AFTER_YEAR_9999 = "9999-12-31T23:59:59-05:00"


@pytest.fixture
def settings_overrides() -> dict:
    signed = {"provider": "vonage", "name": "signed", "tenant": TENANT_A, "secrets": [VONAGE_SIGNATURE_SECRET]}
    return {"connections": [*unsigned_connections(), signed]}


def _post(client, provider: str, name: str, body: bytes | str, content_type: str):
    data = body.encode() if isinstance(body, str) else body
    return client.post(webhook_url(provider, name), data=data, content_type=content_type)


def _only(runtime, model):
    with runtime.db.reading() as session:
        return session.scalars(sa.select(model)).one()


def _json(value: dict) -> str:
    # ensure_ascii: a lone surrogate is written as the \ud800 escape JSON allows, as a sender would.
    return json.dumps(value)


class TestTimesOutsideTheYearsADatetimeHolds:
    """A bad timestamp is not worth refusing a message over (parse_time): the message is stored and its
    time is unknown."""

    @pytest.mark.parametrize(
        "provider, name, body, content_type",
        [
            (
                "standard",
                "open",
                _json(
                    {
                        "type": "message.status",
                        "data": {"providerMessageId": "m-1", "status": "delivered", "occurredAt": BEFORE_YEAR_1},
                    }
                ),
                JSON,
            ),
            (
                "standard",
                "open",
                _json(
                    {
                        "type": "message.received",
                        "data": {"providerMessageId": "m-1", "text": "hi", "occurredAt": AFTER_YEAR_9999},
                    }
                ),
                JSON,
            ),
            ("plivo", "open", "MessageUUID=m-1&Status=delivered&DeliveryReportTime=0001-01-01T00:00:00%2B05:00", FORM),
            (
                "telnyx",
                "open",
                _json(
                    {
                        "data": {
                            "event_type": "message.received",
                            "occurred_at": BEFORE_YEAR_1,
                            "payload": {"id": "m-1", "text": "hi", "received_at": AFTER_YEAR_9999},
                        }
                    }
                ),
                JSON,
            ),
            (
                "bird",
                "open",
                _json({"event": "sms.inbound", "payload": {"id": "m-1", "createdAt": BEFORE_YEAR_1}}),
                JSON,
            ),
            (
                "vonage",
                "open",
                _json({"messageId": "m-1", "msisdn": "15550001111", "text": "hi", "message-timestamp": BEFORE_YEAR_1}),
                JSON,
            ),
            (
                "vonage",
                "open",
                _json({"message_uuid": "m-1", "status": "delivered", "timestamp": AFTER_YEAR_9999}),
                JSON,
            ),
            ("approvedcontact", "open", _json({"messageId": "m-1", "message": "hi", "sentDate": BEFORE_YEAR_1}), JSON),
            (
                "mapping",
                "acme",
                _json({"event": "message.in", "data": {"id": "m-1", "text": "hi", "at": AFTER_YEAR_9999}}),
                JSON,
            ),
            ("mapping", "flat", _json({"msg_id": "m-1", "text": "hi", "timestamp": BEFORE_YEAR_1}), JSON),
            (
                "protexting",
                "open",
                f"<r><Id>m-1</Id><Message>hi</Message><Timestamp>{AFTER_YEAR_9999}</Timestamp></r>",
                XML,
            ),
        ],
        ids=[
            "standard status",
            "standard message",
            "plivo",
            "telnyx",
            "bird",
            "vonage sms api",
            "vonage messages api",
            "approvedcontact",
            "mapping acme",
            "mapping flat",
            "protexting",
        ],
    )
    def test_stored_with_the_time_unknown(self, client, runtime, provider, name, body, content_type):
        response = _post(client, provider, name, body, content_type)
        assert response.status_code == 200, response.get_data(as_text=True)
        assert _only(runtime, Message).occurred_at is None
        assert count(runtime, QuarantinedRequest) == 0


class TestLoneSurrogatesInAStatusReport:
    """JSON may escape a lone surrogate ("\\ud800"); no database can hold one, so the report is stored
    with it replaced (storable), and its dedupe key is made without raising."""

    @pytest.mark.parametrize("field", ["status", "err-code"])
    def test_stored_with_the_character_replaced(self, client, runtime, field):
        report = {"messageId": "m-1", "msisdn": "15550001111", "to": "ACME", "status": "failed", "err-code": "5"}
        response = _post(client, "vonage", "open", _json({**report, field: "\ud800"}), JSON)
        assert response.status_code == 200, response.get_data(as_text=True)
        row = _only(runtime, StatusEventRow)
        assert "\ufffd" in (row.provider_status if field == "status" else row.error_code)
        assert count(runtime, RawRequest) == 1

    def test_a_retry_is_a_duplicate(self, client, runtime):
        body = _json({"messageId": "m-1", "status": "\ud800", "err-code": "\udfff"})
        assert [_post(client, "vonage", "open", body, JSON).status_code for _ in range(2)] == [200, 200]
        assert count(runtime, StatusEventRow) == 1

    def test_a_signed_connection_refuses_it_as_unverifiable(self, client, runtime):
        # Vonage signs the UTF-8 of its parameters, which a lone surrogate has none of: no signature
        # can match, and the request is kept in quarantine.
        body = {"messageId": "m-1", "status": "\ud800", "timestamp": str(int(time.time())), "sig": "\ud800"}
        assert _post(client, "vonage", "signed", _json(body), JSON).status_code == 401
        assert _only(runtime, QuarantinedRequest).reason_code == "invalid_signature"


class TestXmlDeclaringAnEncodingThatCannotBeRead:
    @pytest.mark.parametrize("provider, name", [("protexting", "open"), ("mapping", "acme")])
    def test_refused_as_invalid_xml_and_kept(self, client, runtime, provider, name):
        body = '<?xml version="1.0" encoding="bogus"?><r/>'
        response = _post(client, provider, name, body, XML)
        assert response.status_code == 400
        kept = _only(runtime, QuarantinedRequest)
        assert (kept.http_status, kept.reason_code, kept.body) == (400, "invalid_xml", body.encode())
        assert "bogus" in kept.reason

    # Known to Python but not usable by expat: multi-byte, a codec that is not text, one that fails.
    @pytest.mark.parametrize("encoding", ["UTF-32", "rot13", "idna"])
    def test_other_encodings_expat_cannot_use(self, client, runtime, encoding):
        body = f'<?xml version="1.0" encoding="{encoding}"?><r><Id>\u00e9</Id></r>'.encode("latin-1")
        assert _post(client, "protexting", "open", body, XML).status_code == 400
        assert _only(runtime, QuarantinedRequest).reason_code == "invalid_xml"
