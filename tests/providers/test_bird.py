"""Bird adapter: the HMAC vector of docs/providers.md, the parsing table, the security suite (with Bird's
wide retry window), and the webhook end to end through the read API."""

from __future__ import annotations

import base64
import json
import socket
import time
from datetime import UTC, datetime

import pytest
from werkzeug.datastructures import Headers

from tests.fixtures.app import TENANT_A, USER_A
from tests.support.bird import (
    BIRD_SIGNING_KEY,
    PUBLIC_BASE_URL,
    bird_headers,
    bird_signature,
    envelope,
    message,
    post_bird,
    webhook_url,
)
from webhook_service.config.model import Connection
from webhook_service.database.tables import Message, RawRequest
from webhook_service.model.events import MediaRef, MessageEvent, StatusEvent
from webhook_service.providers import ADAPTERS, ParseFailed, VerificationFailed, WebhookRequest
from webhook_service.providers.bird import STATUSES

from .security_suite import Req, TimestampSecurityTests, WebhookSecuritySuite, count

ADAPTER = ADAPTERS["bird"]
AUTH_A = {"Authorization": "Basic " + base64.b64encode(":".join(USER_A).encode()).decode()}
UTC = UTC
NINE_HOURS = 9 * 3600

# docs/providers.md, "Bird": self-computed from Bird's published algorithm and example values.
VECTOR = {
    "key": "secureSigningKey",
    "url": "https://domain.com/webhook/bird",
    "timestamp": "1719823259",
    "body": b'{"service":"channels","event":"sms.inbound","payload":{}}',
    "signature": "s553Pt35aNC93vUaNH4NWFGdsmqKQWr+c8KMlmJVWjc=",
}


@pytest.fixture
def settings_overrides() -> dict:
    return {
        "public_base_url": PUBLIC_BASE_URL,
        "connections": [
            {"provider": "bird", "name": "main", "tenant": TENANT_A, "secrets": [BIRD_SIGNING_KEY]},
            {
                "provider": "bird",
                "name": "basic",
                "tenant": TENANT_A,
                "secrets": [BIRD_SIGNING_KEY],
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


def _request(
    body: bytes, headers: dict, url: str = VECTOR["url"], received_at: datetime | None = None
) -> WebhookRequest:
    return WebhookRequest(
        method="POST",
        url=url,
        headers=Headers({"Content-Type": "application/json", **headers}),
        body=body,
        received_at=received_at or datetime.now(UTC),
    )


def _connection(*secrets: str, tolerance: int | None = None) -> Connection:
    return Connection(provider="bird", name="t", secrets=list(secrets), timestamp_tolerance_seconds=tolerance)


def _vector_request(url: str = VECTOR["url"], age: int = 10) -> WebhookRequest:
    return _request(
        VECTOR["body"],
        {"messagebird-signature": VECTOR["signature"], "messagebird-request-timestamp": VECTOR["timestamp"]},
        url=url,
        received_at=datetime.fromtimestamp(int(VECTOR["timestamp"]) + age, UTC),
    )


class TestPinnedVector:
    def test_the_tests_signer_reproduces_the_vector(self):
        signature = bird_signature(VECTOR["body"], url=VECTOR["url"], timestamp=VECTOR["timestamp"], key=VECTOR["key"])
        assert signature == VECTOR["signature"]

    def test_the_vector_verifies(self):
        ADAPTER.verify(_vector_request(), _connection(VECTOR["key"]))

    def test_rotation(self):
        ADAPTER.verify(_vector_request(), _connection("an-old-key", VECTOR["key"]))

    def test_the_url_is_signed(self):
        for url in (
            "http://domain.com/webhook/bird",
            "https://domain.com/webhook/bird?x=1",
            "https://domain.com/webhook/bird/",
        ):
            with pytest.raises(VerificationFailed) as failure:
                ADAPTER.verify(_vector_request(url=url), _connection(VECTOR["key"]))
            assert failure.value.code == "invalid_signature"

    def test_a_retry_eight_hours_later_keeps_verifying(self):
        ADAPTER.verify(_vector_request(age=8 * 3600), _connection(VECTOR["key"]))

    def test_a_connection_may_narrow_the_window(self):
        with pytest.raises(VerificationFailed) as failure:
            ADAPTER.verify(_vector_request(age=600), _connection(VECTOR["key"], tolerance=300))
        assert failure.value.code == "stale_timestamp"

    def test_the_vector_is_stale_today(self):
        request = _request(
            VECTOR["body"],
            {"messagebird-signature": VECTOR["signature"], "messagebird-request-timestamp": VECTOR["timestamp"]},
        )
        with pytest.raises(VerificationFailed) as failure:
            ADAPTER.verify(request, _connection(VECTOR["key"]))
        assert failure.value.code == "stale_timestamp"

    def test_the_vector_body_is_signed_but_carries_no_message(self):
        with pytest.raises(ParseFailed) as failure:
            ADAPTER.parse(_vector_request(), _connection(VECTOR["key"]))
        assert failure.value.code == "invalid_payload"


# Table-driven parsing -----------------------------------------------------------------------------

# An inbound SMS as Bird sends it (seed 002's message object, every field).
INBOUND_SMS = (
    b'{"service":"channels","event":"sms.inbound","payload":{"id":"a3b2c1d0-1111-4a2b-9c3d-000000000001",'
    b'"channelId":"5f3e4c4a-2b8d-4f8e-9a61-0c2f1a6b9d10",'
    b'"sender":{"contact":{"id":"c0ffee00-0000-4000-8000-000000000001",'
    b'"identifierKey":"phonenumber","identifierValue":"+31612345678","annotations":{"name":"Ann"}}},'
    b'"receiver":{"connector":{"id":"5f3e4c4a-2b8d-4f8e-9a61-0c2f1a6b9d10","identifierValue":"+15551234567",'
    b'"annotations":{"name":"SMS"},"types":["sms"]}},"meta":{},"reference":"","parts":[{"platformReference":"pr-1"}],'
    b'"status":"delivered","reason":"","direction":"incoming","origin":null,"replyTo":null,'
    b'"lastStatusAt":"2026-01-02T03:04:05.000Z","createdAt":"2026-01-02T03:04:00.000Z",'
    b'"updatedAt":"2026-01-02T03:04:05.000Z","details":"","failure":null,"tags":[],"shortLinks":null,'
    b'"body":{"type":"text","text":{"text":"Hello from Amsterdam"}}}}'
)
THEM, US, FRIEND = "+31612345678", "+15551234567", "+15550002222"
CREATED_AT = datetime(2026, 1, 2, 3, 4, 0, tzinfo=UTC)
LAST_STATUS_AT = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
IMAGES = {
    "type": "image",
    "image": {
        "text": "Two pictures",
        "metadata": {"subject": "Holiday"},
        "images": [
            {"mediaUrl": "https://media.bird.example/a.jpg"},
            {"mediaUrl": "https://media.bird.example/b.png", "altText": "beach"},
        ],
    },
}
FILES = {
    "type": "file",
    "file": {
        "text": "The recording",
        "files": [
            {"mediaUrl": "https://media.bird.example/v.mp4", "contentType": "video/mp4", "filename": "v.mp4"},
            {"mediaUrl": "https://media.bird.example/a.mp3", "contentType": "audio/mpeg"},
        ],
    },
}
TEXT = {"type": "text", "text": {"text": "Hello"}}
EMOJI_TEXT = "Caf\u00e9 \U0001f600\U0001f44d\U0001f3fd \u4f60\u597d"
FAILURE = {"description": "Destination unreachable", "source": {"code": "EC_UNREACHABLE", "name": "carrier"}}


def _inbound(message_id: str, body: dict | None) -> bytes:
    return envelope(
        "sms.inbound",
        message(message_id, direction="incoming", status="delivered", body=body, sender=THEM, recipients=[US]),
    )


def _outbound(message_id: str, status: str, body: dict | None = TEXT, **fields) -> bytes:
    return envelope(
        "sms.outbound",
        message(message_id, direction="outgoing", status=status, body=body, sender=US, recipients=[THEM], **fields),
    )


def _received(message_id: str, **fields) -> MessageEvent:
    return MessageEvent(message_id, "inbound", THEM, (US,), occurred_at=CREATED_AT, **fields)


def _content(message_id: str, **fields) -> MessageEvent:
    return MessageEvent(message_id, "outbound", US, (THEM,), **{"text": "Hello", "occurred_at": CREATED_AT, **fields})


def _status(message_id: str, provider_status: str, **fields) -> StatusEvent:
    return StatusEvent(
        message_id,
        STATUSES[provider_status],
        provider_status,
        **{"occurred_at": LAST_STATUS_AT, "from_": US, "to": (THEM,), **fields},
    )


def _with(body: bytes, change) -> bytes:
    data = json.loads(body)
    change(data)
    return json.dumps(data).encode()


PARSE_CASES = [
    (
        "inbound sms as Bird sends it",
        INBOUND_SMS,
        [
            MessageEvent(
                "a3b2c1d0-1111-4a2b-9c3d-000000000001",
                "inbound",
                THEM,
                (US,),
                text="Hello from Amsterdam",
                occurred_at=CREATED_AT,
            )
        ],
    ),
    (
        "inbound mms: images, text and subject",
        _inbound("img-1", IMAGES),
        [
            _received(
                "img-1",
                text="Two pictures",
                subject="Holiday",
                media=(MediaRef("https://media.bird.example/a.jpg"), MediaRef("https://media.bird.example/b.png")),
            )
        ],
    ),
    (
        "inbound mms: files with their content types",
        _inbound("file-1", FILES),
        [
            _received(
                "file-1",
                text="The recording",
                media=(
                    MediaRef("https://media.bird.example/v.mp4", "video/mp4", "v.mp4"),
                    MediaRef("https://media.bird.example/a.mp3", "audio/mpeg"),
                ),
            )
        ],
    ),
    (
        "text with attachments and a subject",
        _inbound(
            "att-1",
            {
                "type": "text",
                "text": {
                    "text": "See attached",
                    "metadata": {"subject": "Invoice"},
                    "attachments": [
                        {"mediaUrl": "https://media.bird.example/i.pdf", "filename": "i.pdf", "inline": False}
                    ],
                },
            },
        ),
        [
            _received(
                "att-1",
                text="See attached",
                subject="Invoice",
                media=(MediaRef("https://media.bird.example/i.pdf", name="i.pdf"),),
            )
        ],
    ),
    (
        "unicode and emoji",
        _inbound("uni-1", {"type": "text", "text": {"text": EMOJI_TEXT}}),
        [_received("uni-1", text=EMOJI_TEXT)],
    ),
    (
        "unknown fields anywhere are ignored",
        _with(
            _inbound("x-1", TEXT),
            lambda d: (
                d.update(newTop=1),
                d["payload"].update(newField={"a": [1]}),
                d["payload"]["body"]["text"].update(newTextField=True),
                d["payload"]["sender"]["contact"].update(extra="y"),
            ),
        ),
        [_received("x-1", text="Hello")],
    ),
    (
        "a sender given as a contacts list",
        _with(
            _inbound("c-1", TEXT),
            lambda d: d["payload"]["sender"].update(
                contact=None, contacts=[{"identifierKey": "phonenumber", "identifierValue": THEM}]
            ),
        ),
        [_received("c-1", text="Hello")],
    ),
    (
        "a body type with nothing to map",
        _inbound("loc-1", {"type": "location", "location": {"coordinates": {}}}),
        [_received("loc-1")],
    ),
    *[
        (
            f"sms.outbound {status}",
            _outbound(f"out-{status}", status),
            [_content(f"out-{status}"), _status(f"out-{status}", status)],
        )
        for status in STATUSES
    ],
    (
        "a failure with its code and description",
        _outbound("fail-1", "delivery_failed", failure=FAILURE),
        [
            _content("fail-1"),
            _status("fail-1", "delivery_failed", error_code="EC_UNREACHABLE", error_message="Destination unreachable"),
        ],
    ),
    (
        "a numeric failure code",
        _outbound("fail-2", "sending_failed", failure={"source": {"code": 4001}}),
        [_content("fail-2"), _status("fail-2", "sending_failed", error_code="4001")],
    ),
    (
        "no lastStatusAt: updatedAt is the report's time",
        _with(
            _outbound("upd-1", "sent"),
            lambda d: (d["payload"].pop("lastStatusAt"), d["payload"].update(updatedAt="2026-01-02T05:00:00Z")),
        ),
        [_content("upd-1"), _status("upd-1", "sent", occurred_at=datetime(2026, 1, 2, 5, 0, tzinfo=UTC))],
    ),
    (
        "several recipients",
        envelope(
            "sms.outbound",
            message("grp-1", direction="outgoing", status="accepted", body=TEXT, sender=US, recipients=[THEM, FRIEND]),
        ),
        [
            MessageEvent("grp-1", "outbound", US, (THEM, FRIEND), text="Hello", occurred_at=CREATED_AT),
            StatusEvent("grp-1", "accepted", "accepted", LAST_STATUS_AT, from_=US, to=(THEM, FRIEND)),
        ],
    ),
    (
        "a template message without a body",
        _outbound("tpl-1", "accepted", body=None),
        [_content("tpl-1", text=None), _status("tpl-1", "accepted")],
    ),
    (
        "an unmapped status is unknown, with Bird's word kept",
        _outbound("new-1", "throttled"),
        [_content("new-1"), StatusEvent("new-1", "unknown", "throttled", LAST_STATUS_AT, from_=US, to=(THEM,))],
    ),
    ("another event is ignored", envelope("whatsapp.inbound", {"id": "w-1"}), []),
    ("a payload without an id", _with(_inbound("x", TEXT), lambda d: d["payload"].pop("id")), "invalid_payload"),
    ("a payload that is a list", b'{"service":"channels","event":"sms.inbound","payload":[]}', "invalid_payload"),
    (
        "body.text is a string",
        _with(_inbound("x", TEXT), lambda d: d["payload"]["body"].update(text="Hello")),
        "invalid_payload",
    ),
    ("event is a number", b'{"service":"channels","event":7,"payload":{"id":"x"}}', "invalid_payload"),
    ("no event", b'{"service":"channels","payload":{"id":"x"}}', "invalid_payload"),
    (
        "an address longer than any phone number",
        _with(_inbound("x", TEXT), lambda d: d["payload"]["sender"]["contact"].update(identifierValue="+1" * 40)),
        "invalid_payload",
    ),
    ("truncated JSON", INBOUND_SMS[:-30], "invalid_json"),
    ("form body sent as JSON", b"service=channels&event=sms.inbound", "invalid_json"),
    ("JSON that is not an object", b'["sms.inbound"]', "invalid_json"),
    ("empty body", b"", "invalid_json"),
    ("not UTF-8", INBOUND_SMS.replace(b"Amsterdam", b"Amsterd\xe4m"), "invalid_encoding"),
]


@pytest.mark.parametrize("label, body, expected", PARSE_CASES, ids=[case[0] for case in PARSE_CASES])
def test_parse(label, body, expected):
    request = _request(body, {})
    if isinstance(expected, str):
        with pytest.raises(ParseFailed) as failure:
            ADAPTER.parse(request, _connection(BIRD_SIGNING_KEY))
        assert failure.value.code == expected
    else:
        assert ADAPTER.parse(request, _connection(BIRD_SIGNING_KEY)) == expected


def test_media_credentials_only_for_the_hosts_the_connection_names():
    access_key = {"kind": "header", "header": "Authorization", "value": "AccessKey abc123"}
    url = "https://media.bird.example/a.jpg"
    # Bird's media host is not documented: without hosts, the key is sent nowhere.
    assert ADAPTER.media_credentials(Connection(provider="bird", media_auth=access_key), url) is None
    configured = Connection(provider="bird", media_auth={**access_key, "hosts": ["media.bird.example"]})
    credentials = ADAPTER.media_credentials(configured, url)
    assert credentials.headers == {"Authorization": "AccessKey abc123"}
    assert credentials.applies_to("media.bird.example") and not credentials.applies_to("evil.example")


def test_every_seed_status_is_mapped():
    assert set(STATUSES) == {
        "accepted",
        "rejected",
        "processing",
        "scheduled",
        "sent",
        "sending_failed",
        "delivered",
        "delivery_failed",
        "deleted",
    }


# Security -----------------------------------------------------------------------------------------


class TestBirdSecurity(WebhookSecuritySuite, TimestampSecurityTests):
    provider = "bird"
    signature_headers = ("messagebird-signature", "messagebird-request-timestamp")
    tolerance = NINE_HOURS

    def genuine(self, *, body=None, secret=None, url_connection=None, timestamp=None) -> Req:
        body = body or _inbound("sec-1", TEXT)
        headers = bird_headers(
            body,
            url=webhook_url(url_connection or self.connection),
            key=secret or BIRD_SIGNING_KEY,
            timestamp=timestamp,
        )
        return Req(body=body, headers=headers)

    def test_a_request_signed_for_another_connection_url(self, client, runtime):
        self._refused(client, runtime, self.genuine(url_connection=self.basic_connection))


# End to end ---------------------------------------------------------------------------------------


def _api_message(client, provider_message_id: str) -> dict:
    response = client.get(f"/api/v1/providers/bird/messages/{provider_message_id}", headers=AUTH_A)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


class TestEndToEnd:
    def test_inbound_mms_is_stored_and_readable(self, client):
        response = post_bird(client, _inbound("e2e-mms", FILES))
        assert response.status_code == 200
        assert response.get_data() == b"" and response.mimetype == "text/plain"
        message_json = _api_message(client, "e2e-mms")
        assert message_json["direction"] == "inbound" and message_json["status"] == "received"
        assert message_json["from"] == THEM and message_json["to"] == [US]
        assert message_json["text"] == "The recording"
        assert [(a["declaredContentType"], a["name"], a["status"]) for a in message_json["attachments"]] == [
            ("video/mp4", "v.mp4", "pending"),
            ("audio/mpeg", "a.mp3", "pending"),  # unnamed: the URL's last segment
        ]
        by_id = client.get(f"/api/v1/messages/{message_json['id']}", headers=AUTH_A).get_json()
        assert by_id["providerMessageId"] == "e2e-mms"

    def test_delivered_then_a_late_sent_keeps_delivered(self, client):
        delivered = _outbound("e2e-out", "delivered", last_status_at="2026-01-02T03:05:00.000Z")
        late_sent = _outbound("e2e-out", "sent", last_status_at="2026-01-02T03:04:30.000Z")
        assert post_bird(client, delivered).status_code == 200
        assert post_bird(client, late_sent).status_code == 200
        assert post_bird(client, late_sent).status_code == 200  # Bird retries: a duplicate
        message_json = _api_message(client, "e2e-out")
        assert message_json["direction"] == "outbound" and message_json["status"] == "delivered"
        assert message_json["from"] == US and message_json["to"] == [THEM]
        assert [
            (h["status"], h["providerStatus"], h["applied"], h["occurredAt"]) for h in message_json["statusHistory"]
        ] == [("delivered", "delivered", True, "2026-01-02T03:05:00Z"), ("sent", "sent", False, "2026-01-02T03:04:30Z")]

    def test_a_retry_eight_hours_later_with_the_original_timestamp(self, client, runtime):
        body = _inbound("e2e-retry", TEXT)
        signed_at = int(time.time()) - 8 * 3600
        assert post_bird(client, body, timestamp=signed_at).status_code == 200
        assert post_bird(client, body, timestamp=signed_at).status_code == 200
        assert count(runtime, Message) == 1 and count(runtime, RawRequest) == 1

    def test_an_event_we_do_not_map_is_kept_and_acknowledged(self, client, runtime):
        assert post_bird(client, envelope("email.inbound", {"id": "mail-1"})).status_code == 200
        assert count(runtime, RawRequest) == 1 and count(runtime, Message) == 0
