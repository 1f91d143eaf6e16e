"""Telnyx adapter: the Ed25519 vector of docs/providers.md, the parsing table, the security suite, and
the webhook end to end through the read API."""

from __future__ import annotations

import base64
import json
import socket
import time
from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from werkzeug.datastructures import Headers

from tests.fixtures.app import TENANT_A, USER_A
from tests.support.telnyx import (
    EVENT_ID,
    VECTOR_PUBLIC_KEY,
    VECTOR_SEED,
    event_body,
    message_payload,
    post_telnyx,
    seed_for,
    telnyx_headers,
)
from webhook_service.config.model import Connection
from webhook_service.database.tables import Message, RawRequest
from webhook_service.model.events import MediaRef, MessageEvent, StatusEvent
from webhook_service.providers import ADAPTERS, ParseFailed, VerificationFailed, WebhookRequest
from webhook_service.providers.telnyx import STATUSES

from .security_suite import Req, TimestampSecurityTests, WebhookSecuritySuite, count

ADAPTER = ADAPTERS["telnyx"]
AUTH_A = {"Authorization": "Basic " + base64.b64encode(":".join(USER_A).encode()).decode()}
UTC = UTC

# docs/providers.md, "Telnyx": self-computed from the private seed bytes(range(32)).
VECTOR = {
    "public_key": VECTOR_PUBLIC_KEY,
    "timestamp": "1700000000",
    "body": b'{"data":{"event_type":"message.received","id":"e1","payload":{"id":"m1"},"record_type":"event"},'
    b'"meta":{"attempt":1}}',
    "signature": "GyJIUdJhg9GVYUUOWNUJ2suX43EWhTeQE+8452lmtMmOPxdBsSo8nRiK4fAqUPT/gjc7w+QH9Q2N3EaN3ad1Bg==",
}
# A key of small order (y = 0), e.g. a placeholder "AAAA...A=", under which 64 zero bytes "verify".
SMALL_ORDER_KEY = base64.b64encode(bytes(32)).decode()


@pytest.fixture
def settings_overrides() -> dict:
    return {
        "public_base_url": "https://hooks.example.com",
        "connections": [
            {"provider": "telnyx", "name": "main", "tenant": TENANT_A, "secrets": [VECTOR_PUBLIC_KEY]},
            {
                "provider": "telnyx",
                "name": "basic",
                "tenant": TENANT_A,
                "secrets": [VECTOR_PUBLIC_KEY],
                "basic_auth": ["hook:old-password", "hook:new-password"],
            },
        ],
    }


@pytest.fixture
def resolver():
    """No DNS here: media hosts do not resolve, so attachments stay pending (and no test waits)."""

    def unresolvable(host: str, port: int) -> list[str]:
        raise socket.gaierror(socket.EAI_NONAME, host)

    return unresolvable


def _request(body: bytes, headers: dict, received_at: datetime | None = None) -> WebhookRequest:
    return WebhookRequest(
        method="POST",
        url="https://hooks.example.com/webhooks/telnyx/t",
        headers=Headers({"Content-Type": "application/json", **headers}),
        body=body,
        received_at=received_at or datetime.now(UTC),
    )


def _connection(*secrets: str) -> Connection:
    return Connection(provider="telnyx", name="t", secrets=list(secrets))


def _vector_request(signature: str = VECTOR["signature"], timestamp: str = VECTOR["timestamp"]) -> WebhookRequest:
    return _request(
        VECTOR["body"],
        {"telnyx-signature-ed25519": signature, "telnyx-timestamp": timestamp},
        received_at=datetime.fromtimestamp(int(VECTOR["timestamp"]) + 10, UTC),
    )


class TestPinnedVector:
    def test_the_tests_signer_reproduces_the_vector(self):
        headers = telnyx_headers(VECTOR["body"], timestamp=int(VECTOR["timestamp"]))
        assert headers["telnyx-signature-ed25519"] == VECTOR["signature"]

    def test_the_seed_gives_the_vector_public_key_and_signature(self):
        private_key = Ed25519PrivateKey.from_private_bytes(VECTOR_SEED)
        public_key = private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        assert base64.b64encode(public_key).decode() == VECTOR["public_key"]
        signature = private_key.sign(VECTOR["timestamp"].encode() + b"|" + VECTOR["body"])
        assert base64.b64encode(signature).decode() == VECTOR["signature"]

    def test_the_vector_verifies(self):
        ADAPTER.verify(_vector_request(), _connection(VECTOR["public_key"]))

    def test_rotation_and_secrets_that_are_not_keys(self):
        # The settings refuse such secrets (tests/config); a connection made without them may hold one.
        not_keys = ["not base64 !!!", base64.b64encode(bytes(31)).decode(), SMALL_ORDER_KEY]
        ADAPTER.verify(_vector_request(), _connection(*not_keys, VECTOR["public_key"]))
        with pytest.raises(VerificationFailed) as failure:
            ADAPTER.verify(_vector_request(), _connection(*not_keys))
        assert failure.value.code == "invalid_signature"

    def test_a_small_order_key_never_verifies_the_all_zero_signature(self):
        zeros = base64.b64encode(bytes(64)).decode()
        with pytest.raises(VerificationFailed) as failure:
            ADAPTER.verify(_vector_request(signature=zeros), _connection(SMALL_ORDER_KEY))
        assert failure.value.code == "invalid_signature"

    def test_the_signed_timestamp_is_the_header_as_sent(self):
        with pytest.raises(VerificationFailed) as failure:
            ADAPTER.verify(_vector_request(timestamp="1700000001"), _connection(VECTOR["public_key"]))
        assert failure.value.code == "invalid_signature"

    def test_a_signature_of_the_wrong_length_is_malformed(self):
        short = base64.b64encode(base64.b64decode(VECTOR["signature"])[:63]).decode()
        with pytest.raises(VerificationFailed) as failure:
            ADAPTER.verify(_vector_request(signature=short), _connection(VECTOR["public_key"]))
        assert failure.value.code == "malformed_signature"

    def test_the_vector_is_stale_today(self):
        request = _request(
            VECTOR["body"], {"telnyx-signature-ed25519": VECTOR["signature"], "telnyx-timestamp": VECTOR["timestamp"]}
        )
        with pytest.raises(VerificationFailed) as failure:
            ADAPTER.verify(request, _connection(VECTOR["public_key"]))
        assert failure.value.code == "stale_timestamp"


# Table-driven parsing -----------------------------------------------------------------------------

# An inbound SMS as Telnyx documents it (every field, in Telnyx's order).
INBOUND_SMS = (
    b'{"data":{"event_type":"message.received","id":"b301ed3f-1490-491f-995f-6e64e69674d4",'
    b'"occurred_at":"2019-12-09T20:16:07.588+00:00","payload":{"cc":[],"completed_at":null,"cost":null,'
    b'"direction":"inbound","encoding":"GSM-7","errors":[],"from":{"carrier":"T-Mobile USA",'
    b'"line_type":"long_code","phone_number":"+13125550001","status":"webhook_delivered"},'
    b'"id":"84cca175-9755-4859-b67f-4730d7f58aa3","media":[],'
    b'"messaging_profile_id":"740572b6-099c-44a1-89b9-6c92163bc68d",'
    b'"organization_id":"47a530f8-4362-4526-829b-bcee17fd9f7a",'
    b'"parts":1,"received_at":"2019-12-09T20:16:07.503+00:00",'
    b'"record_type":"message","sent_at":null,"tags":[],"text":"Hello there!","to":[{"carrier":"Telnyx",'
    b'"line_type":"Wireless","phone_number":"+17735550002","status":"webhook_delivered"}],"type":"SMS",'
    b'"valid_until":null,"webhook_failover_url":null,"webhook_url":"https://hooks.example.com/webhooks/telnyx/main"},'
    b'"record_type":"event"},"meta":{"attempt":1,"delivered_to":"https://hooks.example.com/webhooks/telnyx/main"}}'
)
INBOUND_SMS_EVENT = MessageEvent(
    "84cca175-9755-4859-b67f-4730d7f58aa3",
    "inbound",
    "+13125550001",
    ("+17735550002",),
    text="Hello there!",
    occurred_at=datetime(2019, 12, 9, 20, 16, 7, 503000, tzinfo=UTC),
)

PHOTO = {
    "content_type": "image/jpeg",
    "hash_sha256": "13a5d1a8" * 8,
    "size": 105093,
    "url": "https://media.telnyx.com/msg/6c0b6f31/photo.jpg",
}
CLIP = {
    "content_type": "video/mp4",
    "hash_sha256": None,
    "size": None,
    "url": "https://media.telnyx.com/msg/6c0b6f31/clip.mp4",
}
RECEIVED_AT = datetime(2026, 1, 2, 3, 4, 0, tzinfo=UTC)
OCCURRED_AT = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
SENDER, US, FRIEND = "+13125550001", "+15551234567", "+13125550003"


def _inbound(message_id: str, **payload) -> bytes:
    return event_body(
        "message.received",
        message_payload(
            message_id, direction="inbound", sender=SENDER, recipients=[(US, "webhook_delivered")], **payload
        ),
    )


def _outbound(event_type: str, message_id: str, status: str, *, event_id: str = EVENT_ID, **payload) -> bytes:
    return event_body(
        event_type,
        message_payload(message_id, direction="outbound", sender=US, recipients=[(SENDER, status)], **payload),
        event_id=event_id,
    )


def _content(message_id: str, **fields) -> MessageEvent:
    return MessageEvent(message_id, "outbound", US, (SENDER,), text="Hello", occurred_at=RECEIVED_AT, **fields)


def _status(message_id: str, provider_status: str, **fields) -> StatusEvent:
    return StatusEvent(
        message_id,
        STATUSES[provider_status],
        provider_status,
        occurred_at=OCCURRED_AT,
        event_id=EVENT_ID,
        from_=US,
        to=(SENDER,),
        **fields,
    )


def _with(body: bytes, change) -> bytes:
    envelope = json.loads(body)
    change(envelope)
    return json.dumps(envelope).encode()


CARRIER_ERROR = {"code": "40300", "title": "Blocked as spam", "detail": "The carrier blocked the message."}

PARSE_CASES = [
    ("inbound sms as documented", INBOUND_SMS, [INBOUND_SMS_EVENT]),
    (
        "inbound mms: several media, subject, group cc",
        _inbound("mms-1", message_type="MMS", text=None, subject="Photos", media=[PHOTO, CLIP], cc=[FRIEND]),
        [
            MessageEvent(
                "mms-1",
                "inbound",
                SENDER,
                (US, FRIEND),
                subject="Photos",
                occurred_at=RECEIVED_AT,
                media=(MediaRef(PHOTO["url"], "image/jpeg", size=105093), MediaRef(CLIP["url"], "video/mp4")),
            )
        ],
    ),
    (
        "unicode and emoji",
        _inbound("uni-1", text="Caf\u00e9 \U0001f600\U0001f44d\U0001f3fd \u4f60\u597d"),
        [
            MessageEvent(
                "uni-1",
                "inbound",
                SENDER,
                (US,),
                text="Caf\u00e9 \U0001f600\U0001f44d\U0001f3fd \u4f60\u597d",
                occurred_at=RECEIVED_AT,
            )
        ],
    ),
    (
        "unknown fields anywhere are ignored",
        _with(
            _inbound("x-1"),
            lambda e: (
                e.update(new_top={"a": 1}),
                e["data"].update(new_data=[1]),
                e["data"]["payload"].update(new_payload=True),
                e["data"]["payload"]["to"][0].update(new_recipient="x"),
            ),
        ),
        [MessageEvent("x-1", "inbound", SENDER, (US,), text="Hello", occurred_at=RECEIVED_AT)],
    ),
    (
        "an unreadable received_at falls back to occurred_at",
        _with(_inbound("t-1"), lambda e: e["data"]["payload"].update(received_at="yesterday")),
        [MessageEvent("t-1", "inbound", SENDER, (US,), text="Hello", occurred_at=OCCURRED_AT)],
    ),
    (
        "message.sent: content and a status",
        _outbound("message.sent", "out-1", "sent"),
        [_content("out-1"), _status("out-1", "sent")],
    ),
    *[
        (
            f"message.finalized {status}",
            _outbound("message.finalized", f"fin-{status}", status),
            [_content(f"fin-{status}"), _status(f"fin-{status}", status)],
        )
        for status in STATUSES
    ],
    (
        "a failure with its error code",
        _outbound("message.finalized", "err-1", "delivery_failed", errors=[CARRIER_ERROR]),
        [
            _content("err-1"),
            _status("err-1", "delivery_failed", error_code="40300", error_message="The carrier blocked the message."),
        ],
    ),
    (
        "a numeric error code and no detail",
        _outbound("message.finalized", "err-2", "sending_failed", errors=[{"code": 40008, "title": "Empty message"}]),
        [_content("err-2"), _status("err-2", "sending_failed", error_code="40008", error_message="Empty message")],
    ),
    (
        "several recipients: one report each",
        event_body(
            "message.finalized",
            message_payload(
                "grp-1",
                direction="outbound",
                sender=US,
                message_type="MMS",
                recipients=[(SENDER, "delivered"), (FRIEND, "delivery_failed")],
            ),
        ),
        [
            MessageEvent("grp-1", "outbound", US, (SENDER, FRIEND), text="Hello", occurred_at=RECEIVED_AT),
            StatusEvent(
                "grp-1", "delivered", "delivered", OCCURRED_AT, event_id=f"{EVENT_ID}:{SENDER}", from_=US, to=(SENDER,)
            ),
            StatusEvent(
                "grp-1",
                "undelivered",
                "delivery_failed",
                OCCURRED_AT,
                event_id=f"{EVENT_ID}:{FRIEND}",
                from_=US,
                to=(FRIEND,),
            ),
        ],
    ),
    (
        "an unmapped status is unknown, with Telnyx's word kept",
        _outbound("message.finalized", "new-1", "carrier_held"),
        [
            _content("new-1"),
            StatusEvent("new-1", "unknown", "carrier_held", OCCURRED_AT, event_id=EVENT_ID, from_=US, to=(SENDER,)),
        ],
    ),
    ("another event type is ignored", event_body("call.initiated", {"call_control_id": "v3:abc"}), []),
    (
        "a message event without an id",
        _with(_inbound("x"), lambda e: e["data"]["payload"].pop("id")),
        "invalid_payload",
    ),
    (
        "to is a string, not a list",
        _with(_inbound("x"), lambda e: e["data"]["payload"].update(to="+15551234567")),
        "invalid_payload",
    ),
    ("text is a number", _with(_inbound("x"), lambda e: e["data"]["payload"].update(text=42)), "invalid_payload"),
    ("event_type is a number", _with(_inbound("x"), lambda e: e["data"].update(event_type=7)), "invalid_payload"),
    ("data is a list", b'{"data":[{"event_type":"message.received"}]}', "invalid_payload"),
    (
        "a sender longer than any address",
        _with(_inbound("x"), lambda e: e["data"]["payload"]["from"].update(phone_number="+1" * 40)),
        "invalid_payload",
    ),
    ("truncated JSON", INBOUND_SMS[:-20], "invalid_json"),
    ("form body sent as JSON", b"event_type=message.received&id=m1", "invalid_json"),
    ("JSON that is not an object", b'[{"data":{}}]', "invalid_json"),
    ("empty body", b"", "invalid_json"),
    ("not UTF-8", INBOUND_SMS.replace(b"Hello there!", b"Hello \xff"), "invalid_encoding"),
]


@pytest.mark.parametrize("label, body, expected", PARSE_CASES, ids=[case[0] for case in PARSE_CASES])
def test_parse(label, body, expected):
    request = _request(body, {})
    if isinstance(expected, str):
        with pytest.raises(ParseFailed) as failure:
            ADAPTER.parse(request, _connection(VECTOR_PUBLIC_KEY))
        assert failure.value.code == expected
    else:
        assert ADAPTER.parse(request, _connection(VECTOR_PUBLIC_KEY)) == expected


def test_every_telnyx_status_is_mapped():
    assert set(STATUSES) == {
        "queued",
        "sending",
        "sent",
        "expired",
        "sending_failed",
        "delivery_unconfirmed",
        "delivered",
        "delivery_failed",
    }


# Security -----------------------------------------------------------------------------------------


class TestTelnyxSecurity(WebhookSecuritySuite, TimestampSecurityTests):
    provider = "telnyx"
    signature_headers = ("telnyx-signature-ed25519", "telnyx-timestamp")
    tolerance = 300

    def genuine(self, *, body=None, secret=None, url_connection=None, timestamp=None) -> Req:
        # Ed25519 signs body and timestamp only, so the connection (URL) does not matter.
        body = body or _inbound("sec-1")
        return Req(body=body, headers=telnyx_headers(body, seed=seed_for(secret), timestamp=timestamp))


# End to end ---------------------------------------------------------------------------------------


def _api_message(client, provider_message_id: str) -> dict:
    response = client.get(f"/api/v1/providers/telnyx/messages/{provider_message_id}", headers=AUTH_A)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


class TestEndToEnd:
    def test_inbound_mms_is_stored_and_readable(self, client):
        body = _inbound("e2e-mms", message_type="MMS", subject="Photos", text="Look \U0001f600", media=[PHOTO, CLIP])
        response = post_telnyx(client, body)
        assert response.status_code == 200
        assert response.get_data() == b"" and response.mimetype == "text/plain"
        message = _api_message(client, "e2e-mms")
        assert message["direction"] == "inbound" and message["status"] == "received"
        assert message["from"] == SENDER and message["to"] == [US]
        assert message["text"] == "Look \U0001f600" and message["subject"] == "Photos"
        assert [(a["declaredContentType"], a["status"]) for a in message["attachments"]] == [
            ("image/jpeg", "pending"),
            ("video/mp4", "pending"),
        ]
        by_id = client.get(f"/api/v1/messages/{message['id']}", headers=AUTH_A).get_json()
        assert by_id["providerMessageId"] == "e2e-mms"

    def test_delivered_then_a_late_sent_keeps_delivered(self, client):
        finalized = _outbound("message.finalized", "e2e-out", "delivered", event_id="evt-finalized")
        late_sent = _outbound("message.sent", "e2e-out", "sent", event_id="evt-sent")
        assert post_telnyx(client, finalized).status_code == 200
        assert post_telnyx(client, late_sent).status_code == 200
        assert post_telnyx(client, late_sent).status_code == 200  # Telnyx retries: a duplicate
        message = _api_message(client, "e2e-out")
        assert message["direction"] == "outbound" and message["status"] == "delivered"
        assert message["from"] == US and message["to"] == [SENDER] and message["text"] == "Hello"
        assert [(h["status"], h["providerStatus"], h["applied"]) for h in message["statusHistory"]] == [
            ("delivered", "delivered", True),
            ("sent", "sent", False),
        ]

    def test_an_event_type_we_do_not_map_is_kept_and_acknowledged(self, client, runtime):
        body = event_body("message.deleted", {"id": "gone-1"})
        assert post_telnyx(client, body).status_code == 200
        assert count(runtime, RawRequest) == 1 and count(runtime, Message) == 0

    def test_a_retry_signed_again_later_is_a_duplicate(self, client, runtime):
        body = _inbound("e2e-retry")
        assert post_telnyx(client, body, timestamp=int(time.time()) - 100).status_code == 200
        assert post_telnyx(client, body).status_code == 200
        assert count(runtime, Message) == 1 and count(runtime, RawRequest) == 1
