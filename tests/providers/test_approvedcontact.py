"""Approved Contact adapter: the (self-computed) signature vector, the parsing table, the security
suite, and seed 001's webhook end to end."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

import pytest
from werkzeug.datastructures import Headers

from tests.fixtures.app import TENANT_A, USER_A
from tests.support.approvedcontact import (
    AC_SECRET,
    SEED_001_INBOUND_MMS,
    ac_headers,
    ac_signature,
    post_ac,
    status_body,
)
from webhook_service.config.model import Connection
from webhook_service.model.events import MediaRef, MessageEvent, StatusEvent
from webhook_service.providers import ADAPTERS, ParseFailed, VerificationFailed, WebhookRequest
from webhook_service.providers.approvedcontact import STATUS_MAP

from .security_suite import Req, TimestampSecurityTests, WebhookSecuritySuite

ADAPTER = ADAPTERS["approvedcontact"]
AUTH_A = {"Authorization": "Basic " + base64.b64encode(":".join(USER_A).encode()).decode()}

# Self-computed (the scheme is assumed, see the adapter): HMAC-SHA256("ac-webhook-secret",
# "1700000000." + body), by Python's hmac module outside the adapter.
VECTOR = {
    "secret": "ac-webhook-secret",
    "timestamp": "1700000000",
    "body": b'{"messageId":"3fa85f64-5717-4562-b3fc-2c963f66afa6","from":"+15551234567","message":"hi"}',
    "hex": "84d360a75c66200fa739674899bddf0a5f29f2247d059f063c2b112eef89e4b1",
    "base64": "hNNgp1xmIA+nOWdImb3fCl8p8iR9BZ8GPCsRLu+J5LE=",
}


@pytest.fixture
def settings_overrides():
    return {
        "connections": [
            {"provider": "approvedcontact", "name": "main", "tenant": TENANT_A, "secrets": [AC_SECRET]},
            {
                "provider": "approvedcontact",
                "name": "basic",
                "tenant": TENANT_A,
                "secrets": [AC_SECRET],
                "basic_auth": ["hook:old-password", "hook:new-password"],
            },
        ]
    }


def _request(body: bytes, headers: dict, received_at: datetime | None = None) -> WebhookRequest:
    return WebhookRequest(
        method="POST",
        url="https://hooks.example.com/webhooks/approvedcontact/main",
        headers=Headers({"Content-Type": "application/json", **headers}),
        body=body,
        received_at=received_at or datetime.now(UTC),
    )


def _connection(*secrets: str) -> Connection:
    return Connection(provider="approvedcontact", name="t", secrets=list(secrets or [AC_SECRET]))


class TestSignatureVector:
    def test_the_tests_signer_reproduces_the_vector(self):
        assert ac_signature(VECTOR["body"], VECTOR["timestamp"], VECTOR["secret"]) == VECTOR["hex"]
        assert (
            ac_signature(VECTOR["body"], VECTOR["timestamp"], VECTOR["secret"], encoding="base64") == VECTOR["base64"]
        )

    AT_SIGNING = datetime.fromtimestamp(int(VECTOR["timestamp"]) + 5, UTC)

    @pytest.mark.parametrize(
        "signature",
        [
            VECTOR["hex"],
            VECTOR["hex"].upper(),
            VECTOR["base64"],
            "sha256=" + VECTOR["hex"],
            "SHA256=" + VECTOR["base64"],
        ],
    )
    def test_hex_or_base64_with_or_without_prefix(self, signature):
        request = _request(
            VECTOR["body"],
            {"X-AC-Signature": signature, "X-AC-Timestamp": VECTOR["timestamp"]},
            received_at=self.AT_SIGNING,
        )
        ADAPTER.verify(request, _connection("an-old-secret", VECTOR["secret"]))

    def test_the_timestamp_is_part_of_the_signed_string(self):
        request = _request(
            VECTOR["body"],
            {"X-AC-Signature": VECTOR["hex"], "X-AC-Timestamp": "1700000001"},
            received_at=self.AT_SIGNING,
        )
        with pytest.raises(VerificationFailed) as failure:
            ADAPTER.verify(request, _connection(VECTOR["secret"]))
        assert failure.value.code == "invalid_signature"

    def test_the_vector_is_stale_today(self):
        request = _request(VECTOR["body"], {"X-AC-Signature": VECTOR["hex"], "X-AC-Timestamp": VECTOR["timestamp"]})
        with pytest.raises(VerificationFailed) as failure:
            ADAPTER.verify(request, _connection(VECTOR["secret"]))
        assert failure.value.code == "stale_timestamp"

    @pytest.mark.parametrize(
        "signature", ["sha256=", "abc", VECTOR["hex"][:-2], "zz" * 32, base64.b64encode(b"\x00" * 20).decode()]
    )
    def test_malformed_signatures(self, signature):
        request = _request(
            VECTOR["body"],
            {"X-AC-Signature": signature, "X-AC-Timestamp": VECTOR["timestamp"]},
            received_at=self.AT_SIGNING,
        )
        with pytest.raises(VerificationFailed) as failure:
            ADAPTER.verify(request, _connection(VECTOR["secret"]))
        assert failure.value.code == "malformed_signature"


SENT_AT = datetime(2025, 1, 11, 10, 30, tzinfo=UTC)
RECEIVED = {"X-AC-WebhookEvent": "MessageReceived"}
NO_EVENT: dict = {}


def _status(status: str, **kwargs) -> StatusEvent:
    return StatusEvent("msg_abc123", status, kwargs.pop("provider_status", status), **kwargs)


# Table-driven parsing: label, headers beside Content-Type: application/json, body byte for byte,
# expected events (or the ParseFailed code).
PARSE_CASES = [
    (
        "seed 001 inbound MMS",
        RECEIVED,
        SEED_001_INBOUND_MMS,
        [
            MessageEvent(
                "3fa85f64-5717-4562-b3fc-2c963f66afa6",
                "inbound",
                "+15551234567",
                (),
                text="Here's the photo you requested",
                media=(
                    MediaRef(
                        "https://storage.approvedcontact.com/attachments/xyz789/photo.jpg",
                        "image/jpeg",
                        "photo.jpg",
                        512000,
                    ),
                ),
            )
        ],
    ),
    (
        "inbound SMS with the public-docs fields",
        RECEIVED,
        b'{"messageId":"m-1","type":0,"tenantId":"00000000-0000-0000-0000-000000000000","from":"+15559876543",'
        b'"tos":["+15551234567"],"targetNumber":"+15551234567","message":"Yes","sentDate":"2025-01-11T10:30:00Z",'
        b'"phoneNumberId":"00000000-0000-0000-0000-000000000000","threadId":"t-9","segmentCount":1,"tag":null,'
        b'"attachments":[]}',
        [
            MessageEvent(
                "m-1",
                "inbound",
                "+15559876543",
                ("+15551234567",),
                text="Yes",
                occurred_at=SENT_AT,
                extra={
                    "tenantId": "00000000-0000-0000-0000-000000000000",
                    "threadId": "t-9",
                    "phoneNumberId": "00000000-0000-0000-0000-000000000000",
                    "segmentCount": 1,
                },
            )
        ],
    ),
    (
        "targetNumber when there is no tos, no event header",
        NO_EVENT,
        b'{"messageId":"m-2","from":"+15559876543","targetNumber":"+15551234567","message":"hi"}',
        [MessageEvent("m-2", "inbound", "+15559876543", ("+15551234567",), text="hi")],
    ),
    (
        "inbound MMS with several media and a subject",
        RECEIVED,
        b'{"messageId":"m-3","from":"+15559876543","tos":["+15551234567"],"subject":"Gallery","message":"",'
        b'"attachments":[{"name":"a.jpg","url":"https://storage.approvedcontact.com/a.jpg","contentType":"image/jpeg",'
        b'"size":10},{"name":"b.mp4","url":"https://storage.approvedcontact.com/b.mp4","contentType":"video/mp4"},'
        b'{"url":"https://storage.approvedcontact.com/c.pdf"}]}',
        [
            MessageEvent(
                "m-3",
                "inbound",
                "+15559876543",
                ("+15551234567",),
                subject="Gallery",
                media=(
                    MediaRef("https://storage.approvedcontact.com/a.jpg", "image/jpeg", "a.jpg", 10),
                    MediaRef("https://storage.approvedcontact.com/b.mp4", "video/mp4", "b.mp4"),
                    MediaRef("https://storage.approvedcontact.com/c.pdf"),
                ),
            )
        ],
    ),
    (
        "Unicode and emoji",
        RECEIVED,
        '{"messageId":"m-4","from":"+15559876543","message":"Caf\u00e9 \U0001f600\U0001f44d\U0001f3fd \u4f60\u597d"}'.encode(),
        [
            MessageEvent(
                "m-4", "inbound", "+15559876543", (), text="Caf\u00e9 \U0001f600\U0001f44d\U0001f3fd \u4f60\u597d"
            )
        ],
    ),
    (
        "escaped Unicode",
        RECEIVED,
        b'{"messageId":"m-5","message":"\\u00e9\\ud83d\\ude00"}',
        [MessageEvent("m-5", "inbound", None, (), text="\u00e9\U0001f600")],
    ),
    (
        "numbers where strings are expected",
        RECEIVED,
        b'{"messageId":12345,"from":15559876543,"tos":[15551234567]}',
        [MessageEvent("12345", "inbound", "15559876543", ("15551234567",))],
    ),
    (
        "unknown extra fields are ignored",
        RECEIVED,
        b'{"messageId":"m-6","from":"+15559876543","message":"x","carrier":{"name":"T"},"priority":5,'
        b'"tag":{"nested":true}}',
        [MessageEvent("m-6", "inbound", "+15559876543", (), text="x")],
    ),
    (
        "outbound message (type 1) with its status",
        NO_EVENT,
        b'{"messageId":"m-7","type":1,"from":"+15551234567","tos":["+15559876543"],"message":"Your order shipped",'
        b'"mediaUrls":["https://storage.approvedcontact.com/x.png"],"status":"sent","sentDate":"2025-01-11T10:30:00Z"}',
        [
            MessageEvent(
                "m-7",
                "outbound",
                "+15551234567",
                ("+15559876543",),
                text="Your order shipped",
                media=(MediaRef("https://storage.approvedcontact.com/x.png"),),
                occurred_at=SENT_AT,
            ),
            StatusEvent("m-7", "sent", "sent", SENT_AT, from_="+15551234567", to=("+15559876543",)),
        ],
    ),
    (
        "outbound message (type Outbound) without a status",
        NO_EVENT,
        b'{"messageId":"m-8","type":"Outbound","from":"+15551234567","tos":["+15559876543"],"message":"Hi"}',
        [MessageEvent("m-8", "outbound", "+15551234567", ("+15559876543",), text="Hi")],
    ),
    (
        "system message (type 2) produces no event",
        RECEIVED,
        b'{"messageId":"m-9","type":2,"message":"Number provisioned"}',
        [],
    ),
    ("system message (type System)", NO_EVENT, b'{"messageId":"m-10","type":"System","message":"x"}', []),
    *[
        (f"status {status}", NO_EVENT, status_body("msg_abc123", status), [_status(canonical_status)])
        for status, canonical_status in STATUS_MAP.items()
        if status != "cancelled"
    ],
    (
        "status cancelled (British spelling)",
        NO_EVENT,
        status_body("msg_abc123", "cancelled"),
        [_status("canceled", provider_status="cancelled")],
    ),
    (
        "status in capitals",
        NO_EVENT,
        status_body("msg_abc123", "Delivered"),
        [_status("delivered", provider_status="Delivered")],
    ),
    (
        "status with an error code and message",
        {"X-AC-WebhookEvent": "MessageStatusUpdated"},
        status_body(
            "msg_abc123",
            "failed",
            errorCode="30007",
            errorMessage="Carrier violation",
            statusDate="2025-01-11T10:30:00Z",
            **{"from": "+15551234567", "tos": ["+15559876543"]},
        ),
        [
            _status(
                "failed",
                error_code="30007",
                error_message="Carrier violation",
                occurred_at=SENT_AT,
                from_="+15551234567",
                to=("+15559876543",),
            )
        ],
    ),
    (
        "status aliases: messageStatus, error object, updatedAt",
        NO_EVENT,
        b'{"id":"msg_abc123","messageStatus":"failed","error":{"code":470,"message":"Blocked"},"updatedAt":1736591400}',
        [_status("failed", error_code="470", error_message="Blocked", occurred_at=SENT_AT)],
    ),
    (
        "status with a scalar error",
        NO_EVENT,
        b'{"messageId":"msg_abc123","status":"failed","error":"30003"}',
        [_status("failed", error_code="30003")],
    ),
    (
        "status named by the event header only",
        {"X-AC-WebhookEvent": "MessageDelivered"},
        b'{"messageId":"msg_abc123","sentDate":"2025-01-11T10:30:00Z"}',
        [_status("delivered", occurred_at=SENT_AT)],
    ),
    (
        "status header with a content-bearing body is still a status",
        {"X-AC-WebhookEvent": "MessageStatus"},
        b'{"messageId":"msg_abc123","status":"sent","message":"Your order shipped"}',
        [_status("sent")],
    ),
    (
        "unknown status word",
        NO_EVENT,
        status_body("msg_abc123", "carrier_ack"),
        [_status("unknown", provider_status="carrier_ack")],
    ),
    (
        "status event without a status",
        {"X-AC-WebhookEvent": "MessageStatus"},
        b'{"messageId":"msg_abc123"}',
        "invalid_payload",
    ),
    ("missing messageId", RECEIVED, b'{"from":"+15559876543","message":"hi"}', "invalid_payload"),
    ("messageId is an object", RECEIVED, b'{"messageId":{"v":1}}', "invalid_payload"),
    ("from is a list", RECEIVED, b'{"messageId":"m","from":["+15559876543"]}', "invalid_payload"),
    (
        "attachments is a string",
        RECEIVED,
        b'{"messageId":"m","attachments":"https://x.example/a.jpg"}',
        "invalid_payload",
    ),
    ("attachment without url", RECEIVED, b'{"messageId":"m","attachments":[{"name":"a.jpg"}]}', "invalid_payload"),
    (
        "negative size",
        RECEIVED,
        b'{"messageId":"m","attachments":[{"url":"https://x.example/a","size":-1}]}',
        "invalid_payload",
    ),
    (
        "absurd size",
        RECEIVED,
        b'{"messageId":"m","attachments":[{"url":"https://x.example/a","size":1e300}]}',
        "invalid_payload",
    ),
    (
        "21 attachments",
        RECEIVED,
        json.dumps({"messageId": "m", "attachments": [{"url": f"https://x.example/{i}"} for i in range(21)]}).encode(),
        "invalid_payload",
    ),
    ("huge messageId", RECEIVED, json.dumps({"messageId": "x" * 1000}).encode(), "invalid_payload"),
    ("NUL character in the text", RECEIVED, b'{"messageId":"m","message":"a\\u0000b"}', "invalid_payload"),
    ("unpaired surrogate in an address", RECEIVED, b'{"messageId":"m","tos":["\\ud800"]}', "invalid_payload"),
    (
        "NUL character in an attachment name",
        RECEIVED,
        b'{"messageId":"m","attachments":[{"url":"https://x.example/a","name":"a\\u0000.jpg"}]}',
        "invalid_payload",
    ),
    (
        "unstorable provider facts are dropped",
        RECEIVED,
        b'{"messageId":"m","threadId":"t\\u0000"}',
        [MessageEvent("m", "inbound", None, ())],
    ),
    ("truncated JSON", RECEIVED, SEED_001_INBOUND_MMS[:60], "invalid_json"),
    ("form body sent as JSON", RECEIVED, b"messageId=m&from=%2B15559876543&message=hi", "invalid_json"),
    ("JSON that is not an object", RECEIVED, b'[{"messageId":"m"}]', "invalid_json"),
    ("empty body", RECEIVED, b"", "invalid_json"),
    ("not UTF-8", RECEIVED, b'{"messageId":"m","message":"\xff\xfe"}', "invalid_encoding"),
    ("nested too deeply", RECEIVED, b"[" * 100_000 + b"]" * 100_000, "invalid_json"),
]


@pytest.mark.parametrize("label, headers, body, expected", PARSE_CASES, ids=[case[0] for case in PARSE_CASES])
def test_parse(label, headers, body, expected):
    request = _request(body, headers)
    if isinstance(expected, str):
        with pytest.raises(ParseFailed) as failure:
            ADAPTER.parse(request, _connection())
        assert failure.value.code == expected
    else:
        assert ADAPTER.parse(request, _connection()) == expected


def test_every_status_is_in_the_table():
    covered = {case[0].removeprefix("status ") for case in PARSE_CASES if case[0].startswith("status ")}
    assert set(STATUS_MAP) <= covered | {"cancelled"}
    assert {"queued", "sending", "sent", "delivered", "failed"} <= set(STATUS_MAP)  # seed 000


class TestApprovedContactSecurity(WebhookSecuritySuite, TimestampSecurityTests):
    provider = "approvedcontact"
    signature_headers = ("X-AC-Signature", "X-AC-Timestamp")
    tolerance = 300

    def genuine(self, *, body=None, secret=None, url_connection=None, timestamp=None) -> Req:
        body = body or SEED_001_INBOUND_MMS
        return Req(body=body, headers=ac_headers(body, secret=secret or AC_SECRET, timestamp=timestamp))


class TestEndToEnd:
    def test_seed_001_webhook_is_acknowledged_and_readable(self, client):
        response = post_ac(client, SEED_001_INBOUND_MMS, encoding="base64")
        assert response.status_code == 200
        assert response.get_json() == {"success": True}
        assert response.mimetype == "application/json"
        found = client.get(
            "/api/v1/providers/approvedcontact/messages/3fa85f64-5717-4562-b3fc-2c963f66afa6", headers=AUTH_A
        )
        assert found.status_code == 200
        message = found.get_json()
        assert message["direction"] == "inbound" and message["status"] == "received"
        assert message["from"] == "+15551234567"
        assert message["text"] == "Here's the photo you requested"
        [attachment] = message["attachments"]
        assert attachment["declaredContentType"] == "image/jpeg" and attachment["name"] == "photo.jpg"
        assert attachment["status"] == "pending"
        assert client.get(f"/api/v1/messages/{message['id']}", headers=AUTH_A).get_json()["id"] == message["id"]

    def test_numbers_are_normalized_to_e164(self, client):
        body = b'{"messageId":"m-e164","type":0,"from":"(555) 987-6543","tos":["15551234567"],"message":"hi"}'
        assert post_ac(client, body).status_code == 200
        message = client.get("/api/v1/providers/approvedcontact/messages/m-e164", headers=AUTH_A).get_json()
        assert message["from"] == "+15559876543" and message["to"] == ["+15551234567"]

    def test_delivered_then_a_late_sent_keeps_delivered(self, client):
        outbound = (
            b'{"messageId":"msg_abc123","type":1,"from":"+15551234567","tos":["+15559876543"],'
            b'"message":"Your order shipped","status":"queued","sentDate":"2025-01-11T10:30:00Z"}'
        )
        assert post_ac(client, outbound, event=None).status_code == 200
        for status, at in (("delivered", "2025-01-11T10:30:09Z"), ("sent", "2025-01-11T10:30:05Z")):
            body = status_body("msg_abc123", status, statusDate=at)
            assert post_ac(client, body, event="MessageStatusUpdated").status_code == 200
        message = client.get("/api/v1/providers/approvedcontact/messages/msg_abc123", headers=AUTH_A).get_json()
        assert message["direction"] == "outbound" and message["status"] == "delivered"
        assert message["to"] == ["+15559876543"] and message["text"] == "Your order shipped"
        assert [h["status"] for h in message["statusHistory"]] == ["queued", "delivered", "sent"]

    def test_a_report_for_an_unknown_message_keeps_its_addresses(self, client):
        body = status_body("msg_new", "failed", errorCode="30003", **{"from": "+15551234567", "tos": ["+15559876543"]})
        assert post_ac(client, body, event=None).status_code == 200
        message = client.get("/api/v1/providers/approvedcontact/messages/msg_new", headers=AUTH_A).get_json()
        assert message["status"] == "failed" and message["statusHistory"][0]["errorCode"] == "30003"
        assert message["from"] == "+15551234567" and message["to"] == ["+15559876543"]

    def test_system_message_is_stored_raw_without_a_message(self, client):
        assert post_ac(client, b'{"messageId":"sys-1","type":2,"message":"x"}', event=None).status_code == 200
        assert client.get("/api/v1/providers/approvedcontact/messages/sys-1", headers=AUTH_A).status_code == 404
