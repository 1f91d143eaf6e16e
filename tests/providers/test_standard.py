"""Standard Webhooks adapter: the official vector, parsing table, and the security suite."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from werkzeug.datastructures import Headers

from tests.fixtures.app import STANDARD_SECRET
from tests.support.standard import standard_headers
from webhook_service.config.model import Connection
from webhook_service.model.events import MediaRef, MessageEvent, StatusEvent
from webhook_service.providers import ADAPTERS, ParseFailed, VerificationFailed, WebhookRequest

from .security_suite import Req, TimestampSecurityTests, WebhookSecuritySuite

ADAPTER = ADAPTERS["standard"]

# The Standard Webhooks specification's own example.
VECTOR = {
    "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    "id": "msg_p5jXN8AQM9LWM0D4loKWxJek",
    "timestamp": 1614265330,
    "payload": b'{"test": 2432232314}',
    "signature": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
}


def _request(body: bytes, headers: dict, received_at: datetime | None = None) -> WebhookRequest:
    return WebhookRequest(
        method="POST",
        url="https://hooks.example.com/webhooks/standard",
        headers=Headers(headers),
        body=body,
        received_at=received_at or datetime.now(UTC),
    )


def _connection(*secrets: str) -> Connection:
    return Connection(provider="standard", name="t", secrets=list(secrets))


class TestOfficialVector:
    def test_the_specification_example_verifies(self):
        request = _request(
            VECTOR["payload"],
            {
                "webhook-id": VECTOR["id"],
                "webhook-timestamp": str(VECTOR["timestamp"]),
                "webhook-signature": VECTOR["signature"],
            },
            received_at=datetime.fromtimestamp(VECTOR["timestamp"] + 10, UTC),
        )
        ADAPTER.verify(request, _connection(VECTOR["secret"]))

    def test_one_of_several_signatures_and_rotated_secrets(self):
        request = _request(
            VECTOR["payload"],
            {
                "webhook-id": VECTOR["id"],
                "webhook-timestamp": str(VECTOR["timestamp"]),
                "webhook-signature": "v1,bm90IGl0 v2,abc " + VECTOR["signature"],
            },
            received_at=datetime.fromtimestamp(VECTOR["timestamp"], UTC),
        )
        ADAPTER.verify(request, _connection("whsec_" + "b2xkIHNlY3JldCBvbGQgc2VjcmV0", VECTOR["secret"]))

    def test_the_vector_is_stale_today(self):
        request = _request(
            VECTOR["payload"],
            {
                "webhook-id": VECTOR["id"],
                "webhook-timestamp": str(VECTOR["timestamp"]),
                "webhook-signature": VECTOR["signature"],
            },
        )
        with pytest.raises(VerificationFailed) as failure:
            ADAPTER.verify(request, _connection(VECTOR["secret"]))
        assert failure.value.code == "stale_timestamp"

    def test_a_secret_that_is_not_base64_matches_nothing_but_does_not_crash(self):
        request = _request(
            VECTOR["payload"],
            {
                "webhook-id": VECTOR["id"],
                "webhook-timestamp": str(VECTOR["timestamp"]),
                "webhook-signature": VECTOR["signature"],
            },
            received_at=datetime.fromtimestamp(VECTOR["timestamp"], UTC),
        )
        with pytest.raises(VerificationFailed):
            ADAPTER.verify(request, _connection("whsec_"))


# Table-driven parsing: label, body as the sender sends it, expected events (or the ParseFailed code).
PARSE_CASES = [
    (
        "inbound sms",
        b'{"type":"message.received","data":{"providerMessageId":"m1","from":"+15550001111",'
        b'"to":["+15551234567"],"text":"hi"}}',
        [MessageEvent("m1", "inbound", "+15550001111", ("+15551234567",), text="hi")],
    ),
    (
        "inbound mms with two attachments and a subject",
        b'{"type":"message.received","data":{"providerMessageId":"m2","from":"+15550001111","to":["+15551234567"],'
        b'"subject":"Pics","text":null,"attachments":[{"url":"https://cdn.example.com/a.jpg","contentType":"image/jpeg",'
        b'"name":"a.jpg","size":10},{"url":"https://cdn.example.com/b.pdf"}]}}',
        [
            MessageEvent(
                "m2",
                "inbound",
                "+15550001111",
                ("+15551234567",),
                subject="Pics",
                media=(
                    MediaRef("https://cdn.example.com/a.jpg", "image/jpeg", "a.jpg", 10),
                    MediaRef("https://cdn.example.com/b.pdf"),
                ),
            )
        ],
    ),
    (
        "unicode and emoji",
        '{"type":"message.received","data":{"providerMessageId":"m3","text":"h\u00e9 \U0001f600 \u4f60\u597d"}}'.encode(),
        [MessageEvent("m3", "inbound", None, (), text="h\u00e9 \U0001f600 \u4f60\u597d")],
    ),
    (
        "outbound message",
        b'{"type":"message.sent","data":{"providerMessageId":"m4","from":"+15551234567","to":["+15550001111"]}}',
        [MessageEvent("m4", "outbound", "+15551234567", ("+15550001111",))],
    ),
    (
        "status",
        b'{"type":"message.status","data":{"providerMessageId":"m4","status":"delivered",'
        b'"providerStatus":"DELIVRD","occurredAt":"2026-01-02T03:04:05Z"}}',
        [StatusEvent("m4", "delivered", "DELIVRD", datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), event_id="wh-1")],
    ),
    (
        "status with an unknown canonical value",
        b'{"type":"message.status","data":{"providerMessageId":"m4","status":"done"}}',
        "invalid_payload",
    ),
    ("unknown type", b'{"type":"message.deleted","data":{}}', "invalid_payload"),
    ("missing provider id", b'{"type":"message.received","data":{"text":"x"}}', "invalid_payload"),
    ("truncated JSON", b'{"type":"message.received","data":{"providerMessageId":"m1"', "invalid_json"),
    ("form body sent as JSON", b"type=message.received&providerMessageId=m1", "invalid_json"),
    ("JSON that is not an object", b'["type"]', "invalid_json"),
    ("not UTF-8", b'{"type":"message.received","data":{"providerMessageId":"\xff"}}', "invalid_encoding"),
    (
        "21 attachments",
        json.dumps(
            {
                "type": "message.received",
                "data": {
                    "providerMessageId": "m5",
                    "attachments": [{"url": f"https://x.example/{i}"} for i in range(21)],
                },
            }
        ).encode(),
        "invalid_payload",
    ),
]


@pytest.mark.parametrize("label, body, expected", PARSE_CASES, ids=[case[0] for case in PARSE_CASES])
def test_parse(label, body, expected):
    request = _request(body, {"webhook-id": "wh-1", "Content-Type": "application/json"})
    if isinstance(expected, str):
        with pytest.raises(ParseFailed) as failure:
            ADAPTER.parse(request, _connection(STANDARD_SECRET))
        assert failure.value.code == expected
    else:
        assert ADAPTER.parse(request, _connection(STANDARD_SECRET)) == expected


class TestStandardSecurity(WebhookSecuritySuite, TimestampSecurityTests):
    provider = "standard"
    signature_headers = ("webhook-id", "webhook-timestamp", "webhook-signature")
    tolerance = 300

    def genuine(self, *, body=None, secret=None, url_connection=None, timestamp=None) -> Req:
        body = body or b'{"type":"message.received","data":{"providerMessageId":"sec-1","text":"hi"}}'
        headers = standard_headers(
            body, secret=secret or STANDARD_SECRET, timestamp=timestamp, webhook_id="msg_fixed_for_replays"
        )
        return Req(body=body, headers=headers)


def test_basic_auth_alone_authenticates_a_connection_without_secrets(client):
    body = b'{"type":"message.received","data":{"providerMessageId":"b-1"}}'
    import base64

    good = "Basic " + base64.b64encode(b"hook:old-password").decode()
    response = client.post(
        "/webhooks/standard/basic-only", data=body, content_type="application/json", headers={"Authorization": good}
    )
    assert response.status_code == 200
    response = client.post("/webhooks/standard/basic-only", data=body, content_type="application/json")
    assert response.status_code == 401


def test_development_connection_accepts_unsigned_requests(client):
    body = b'{"type":"message.received","data":{"providerMessageId":"dev-1"}}'
    response = client.post("/webhooks/standard/open", data=body, content_type="application/json")
    assert response.status_code == 200
