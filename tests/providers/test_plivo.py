"""Plivo adapter: the V3 signature vector, the parsing table, the security suite, and the whole path
through the intake to the read API."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from urllib.parse import parse_qsl, quote

import pytest
from werkzeug.datastructures import Headers

from tests.fixtures.app import TENANT_A, USER_A
from tests.support.plivo import PLIVO_TOKEN, form_body, inbound_params, plivo_signature, status_params
from webhook_service.config.model import Connection, MediaAuth
from webhook_service.model.events import MediaRef, MessageEvent, StatusEvent
from webhook_service.providers import ADAPTERS, ParseFailed, VerificationFailed, WebhookRequest

from .security_suite import Req, WebhookSecuritySuite

ADAPTER = ADAPTERS["plivo"]
FORM = "application/x-www-form-urlencoded"
SIGNATURE = "X-Plivo-Signature-V3"
NONCE = "X-Plivo-Signature-V3-Nonce"
PUBLIC_BASE = "https://hooks.example.com"
AUTH_A = {"Authorization": "Basic " + base64.b64encode(":".join(USER_A).encode()).decode()}

UUID = "1e2f3a4b-5c6d-4e7f-8a9b-0c1d2e3f4a5b"
MEDIA = [f"https://media.plivo.com/Account/MAXXXXXXXXXXXXXXXXXX/Message/{UUID}/Media/{n}" for n in range(3)]

# docs/providers.md, "Plivo": self-computed from the V3 algorithm as read there.
VECTOR = {
    "token": "my_auth_token",
    "nonce": "12345",
    "url": "https://example.com/sms",
    "params": [("From", "14155550100"), ("To", "14155550111"), ("Text", "hi"), ("Type", "sms"), ("MessageUUID", "abc")],
    "signature": "Zy5Q3827DnBdFVA+g5iAryjksVevlnhie4oP8pzW/uM=",
}


def _connection(*secrets: str) -> Connection:
    return Connection(provider="plivo", name="t", secrets=list(secrets or [PLIVO_TOKEN]))


def _request(
    body: bytes,
    *,
    url: str = f"{PUBLIC_BASE}/webhooks/plivo/main",
    content_type: str = FORM,
    signature: str | None = None,
    nonce: str | None = None,
) -> WebhookRequest:
    headers = {"Content-Type": content_type}
    if signature is not None:
        headers[SIGNATURE] = signature
    if nonce is not None:
        headers[NONCE] = nonce
    return WebhookRequest(method="POST", url=url, headers=Headers(headers), body=body)


def _vector_request(signature: str = VECTOR["signature"], *, body: bytes | None = None, **changes) -> WebhookRequest:
    options = {"url": VECTOR["url"], "signature": signature, "nonce": VECTOR["nonce"], **changes}
    return _request(form_body(VECTOR["params"]) if body is None else body, **options)


def _refusal(request: WebhookRequest, *secrets: str) -> str:
    with pytest.raises(VerificationFailed) as failure:
        ADAPTER.verify(request, _connection(*secrets))
    return failure.value.code


class TestSignatureV3:
    def test_the_signer_used_by_these_tests_reproduces_the_vector(self):
        assert plivo_signature(VECTOR["url"], VECTOR["params"], VECTOR["nonce"], VECTOR["token"]) == VECTOR["signature"]

    def test_the_vector_verifies(self):
        ADAPTER.verify(_vector_request(), _connection(VECTOR["token"]))

    def test_any_of_several_comma_separated_signatures(self):
        other = base64.b64encode(b"\x01" * 32).decode()
        for header in (
            f"{other},{VECTOR['signature']}",
            f"{VECTOR['signature']}, {other}",
            f"garbage!!,{VECTOR['signature']}",
        ):
            ADAPTER.verify(_vector_request(header), _connection(VECTOR["token"]))

    def test_rotated_tokens_any_one_matches(self):
        ADAPTER.verify(_vector_request(), _connection("old-token", VECTOR["token"]))
        assert _refusal(_vector_request(), "old-token", "another-token") == "invalid_signature"

    @pytest.mark.parametrize(
        "change",
        [
            {"nonce": "12346"},
            {"url": "https://example.com/sms/"},
            {"url": "http://example.com/sms"},
            {"url": "https://example.com/sms?x=1"},
            {"body": form_body(VECTOR["params"] + [("Extra", "1")])},
            {"body": form_body(VECTOR["params"]).replace(b"Text=hi", b"Text=ho")},
        ],
    )
    def test_anything_else_signed_is_refused(self, change):
        assert _refusal(_vector_request(**change), VECTOR["token"]) == "invalid_signature"

    @pytest.mark.parametrize(
        "url, params",
        [
            ("https://hooks.example.com/plivo?b=2&a=1&a=0", [("To", "1"), ("From", "2"), ("To", "0")]),
            ("https://hooks.example.com/plivo?only=query", []),
            ("https://hooks.example.com:8443/plivo", [("Text", "caf\u00e9 \U0001f600")]),
            ("https://hooks.example.com/plivo", []),
        ],
    )
    def test_query_strings_repeated_names_unicode_and_empty_bodies(self, url, params):
        signature = plivo_signature(url, params, "98765")
        ADAPTER.verify(_request(form_body(params), url=url, signature=signature, nonce="98765"), _connection())

    @pytest.mark.parametrize("double_utf8", [False, True], ids=["utf8 (plivo-node)", "utf8 twice (plivo-python)"])
    def test_non_ascii_text_signed_either_way_plivo_sdks_encode_it(self, double_utf8):
        params = [("MessageUUID", UUID), ("Text", "Caf\u00e9 \U0001f600"), ("From", "14155550100")]
        url = f"{PUBLIC_BASE}/webhooks/plivo/main"
        signature = plivo_signature(url, params, "4242", double_utf8=double_utf8)
        assert signature != plivo_signature(url, params, "4242", double_utf8=not double_utf8)
        ADAPTER.verify(_request(form_body(params), url=url, signature=signature, nonce="4242"), _connection())

    @pytest.mark.parametrize(
        "signature", ["", ",,,", "not base64 !!!", "A" * 5000, "\u00e9t\u00e9", base64.b64encode(b"\x00" * 20).decode()]
    )
    def test_garbage_signatures_are_verification_failures(self, signature):
        with pytest.raises(VerificationFailed):
            ADAPTER.verify(_vector_request(signature), _connection(VECTOR["token"]))

    @pytest.mark.parametrize(
        "body, url",
        [
            (b"\xff\xfe", VECTOR["url"]),
            (b"From=1&&", VECTOR["url"]),
            (b'{"MessageUUID": "abc"}', VECTOR["url"]),
            (form_body(VECTOR["params"]), "https://[::1/broken"),
        ],
    )
    def test_malformed_requests_are_verification_failures(self, body, url):
        with pytest.raises(VerificationFailed):
            ADAPTER.verify(_vector_request(body=body, url=url), _connection(VECTOR["token"]))

    def test_missing_nonce(self):
        request = _request(form_body(VECTOR["params"]), url=VECTOR["url"], signature=VECTOR["signature"])
        assert _refusal(request, VECTOR["token"]) == "missing_signature"


def _inbound_body(text: str = "Hello+there%21", *, extra: str = "") -> bytes:
    return (
        f"From=14155550100&To=15551234567&Type=sms&Text={text}&MessageUUID={UUID}&Units=1"
        f"&TotalRate=0.00000&TotalAmount=0.00000&MessageIntent=&PowerpackUUID={extra}"
    ).encode()


def _mms_body(media: str, body: str = "Look", media_count: int = 2) -> bytes:
    return (
        f"From=14155550100&To=15551234567&Type=mms&Body={body}&MessageUUID={UUID}&MediaCount={media_count}"
        f"{media}&Units=1&TotalRate=0.00000&TotalAmount=0.00000&PowerpackUUID="
    ).encode()


def _media_fields(*pairs: tuple[int, str]) -> str:
    return "".join(f"&Media{n}={quote(url, safe='')}" for n, url in pairs)


def _status_body(status: str, extra: str = "&ErrorCode=") -> bytes:
    return (
        f"MessageUUID={UUID}&To=14155550100&From=15551234567&Type=sms&Status={status}&Units=1"
        f"&TotalRate=0.00500&TotalAmount=0.00500&MCC=310&MNC=410{extra}&ParentMessageUUID={UUID}"
        f"&PartInfo=1+of+1&Sequence=2&MessageTime=2026-01-02+03%3A04%3A00.000000"
        f"&QueuedTime=2026-01-02+03%3A04%3A01.000000&SentTime=2026-01-02+03%3A04%3A02.000000"
        f"&DeliveryReportTime=2026-01-02+03%3A04%3A09.500000&PowerpackUUID="
    ).encode()


def _inbound(text: str | None = "Hello there!", media=()) -> MessageEvent:
    return MessageEvent(UUID, "inbound", "14155550100", ("15551234567",), text=text, media=tuple(media))


def _at(second: int, microsecond: int = 0) -> datetime:
    return datetime(2026, 1, 2, 3, 4, second, microsecond, tzinfo=UTC)


def _status(status: str, canonical_status: str, occurred_at: datetime | None, **fields) -> StatusEvent:
    return StatusEvent(
        UUID, canonical_status, status, occurred_at=occurred_at, from_="15551234567", to=("14155550100",), **fields
    )


# Every status of the mapping table, as Plivo names it, with the canonical status and report time.
STATUS_TABLE = [
    ("queued", "queued", _at(1)),
    ("sent", "sent", _at(2)),
    ("delivered", "delivered", _at(9, 500000)),
    ("undelivered", "undelivered", _at(9, 500000)),
    ("failed", "failed", None),
    ("rejected", "rejected", None),
    ("read", "read", _at(9, 500000)),
]

# Table-driven parsing: label, body exactly as Plivo sends it, content type, expected events or the
# ParseFailed code. Plivo has no MMS subject parameter, so there is no subject case.
PARSE_CASES = [
    ("inbound sms", _inbound_body(), FORM, [_inbound()]),
    (
        "inbound mms, media numbered from 1 (API reference)",
        _mms_body(_media_fields((1, MEDIA[0]), (2, MEDIA[1]))),
        FORM,
        [_inbound("Look", [MediaRef(MEDIA[0]), MediaRef(MEDIA[1])])],
    ),
    (
        "inbound mms, media numbered from 0 (support articles), three of them",
        _mms_body(_media_fields((0, MEDIA[0]), (1, MEDIA[1]), (2, MEDIA[2])), media_count=3),
        FORM,
        [_inbound("Look", [MediaRef(m) for m in MEDIA])],
    ),
    (
        "media fields in numeric order",
        _mms_body(_media_fields((10, MEDIA[1]), (2, MEDIA[0]))),
        FORM,
        [_inbound("Look", [MediaRef(MEDIA[0]), MediaRef(MEDIA[1])])],
    ),
    ("MediaCount=1000 with no media fields", _mms_body("", media_count=1000), FORM, [_inbound("Look")]),
    (
        "mms without text",
        _mms_body(_media_fields((1, MEDIA[0])), body=""),
        FORM,
        [_inbound(None, [MediaRef(MEDIA[0])])],
    ),
    ("mms whose text came as Text", _mms_body("").replace(b"Body=Look", b"Text=Look"), FORM, [_inbound("Look")]),
    (
        "unicode and emoji",
        _inbound_body("Caf%C3%A9+%F0%9F%98%80%F0%9F%91%8D%F0%9F%8F%BD+%E4%BD%A0%E5%A5%BD"),
        FORM,
        [_inbound("Caf\u00e9 \U0001f600\U0001f44d\U0001f3fd \u4f60\u597d")],
    ),
    (
        "unknown extra fields are ignored",
        _inbound_body(extra="&ConversationID=&ContentType=text&SomethingPlivoAddsTomorrow=%7B%7D"),
        FORM,
        [_inbound()],
    ),
    *[
        (f"status {status}", _status_body(status), FORM, [_status(status, expected, at)])
        for status, expected, at in STATUS_TABLE
    ],
    (
        "failed with error code",
        _status_body("failed", "&ErrorCode=200"),
        FORM,
        [_status("failed", "failed", None, error_code="200")],
    ),
    (
        "undelivered with error code",
        _status_body("undelivered", "&ErrorCode=30"),
        FORM,
        [_status("undelivered", "undelivered", _at(9, 500000), error_code="30")],
    ),
    (
        "delivered with the no-error code 000",
        _status_body("delivered", "&ErrorCode=000"),
        FORM,
        [_status("delivered", "delivered", _at(9, 500000))],
    ),
    ("status word in upper case", _status_body("SENT"), FORM, [_status("SENT", "sent", _at(2))]),
    (
        "a status Plivo adds later is unknown, its word kept",
        _status_body("expired"),
        FORM,
        [_status("expired", "unknown", None)],
    ),
    (
        "unreadable report time is ignored",
        _status_body("sent").replace(b"SentTime=2026-01-02", b"SentTime=2026-13-02"),
        FORM,
        [_status("sent", "sent", None)],
    ),
    ("received report without content adds nothing", _status_body("received"), FORM, []),
    ("missing MessageUUID", b"From=14155550100&To=15551234567&Type=sms&Text=hi", FORM, "missing_message_id"),
    ("no status and no content", f"MessageUUID={UUID}&From=14155550100".encode(), FORM, "missing_status"),
    ("empty body", b"", FORM, "missing_message_id"),
    ("not a form", b"MessageUUID", FORM, "invalid_form"),
    ("not UTF-8", b"MessageUUID=a&Text=\xff", FORM, "invalid_encoding"),
    ("truncated JSON", b'{"MessageUUID": "ab', "application/json", "unsupported_content_type"),
    ("form body sent as JSON", _inbound_body(), "application/json", "unsupported_content_type"),
    (
        "From longer than any address",
        _inbound_body().replace(b"From=14155550100", b"From=" + b"1" * 65),
        FORM,
        "invalid_payload",
    ),
    ("Status of 10,000 characters", _status_body("x" * 10_000), FORM, "invalid_payload"),
]


@pytest.mark.parametrize("label, body, content_type, expected", PARSE_CASES, ids=[c[0] for c in PARSE_CASES])
def test_parse(label, body, content_type, expected):
    request = _request(body, content_type=content_type)
    if isinstance(expected, str):
        with pytest.raises(ParseFailed) as failure:
            ADAPTER.parse(request, _connection())
        assert failure.value.code == expected
    else:
        assert ADAPTER.parse(request, _connection()) == expected


def test_configured_media_auth_goes_to_plivo_media_host_by_default():
    connection = Connection(
        provider="plivo",
        name="t",
        secrets=[PLIVO_TOKEN],
        media_auth=MediaAuth(kind="basic", username="MA0123456789ABCDEFGH", password="token"),
    )
    credentials = ADAPTER.media_credentials(connection, MEDIA[0])
    assert credentials.hosts == frozenset({"media.plivo.com"})
    assert ADAPTER.media_credentials(_connection(), MEDIA[0]) is None


# Through the application -------------------------------------------------------------------------


@pytest.fixture
def settings_overrides() -> dict:
    return {
        "public_base_url": PUBLIC_BASE,
        # Downloads are only enqueued (no worker runs), so attachments stay pending and nothing is fetched.
        "queue": {"immediate": False},
        "connections": [
            {"provider": "plivo", "name": "main", "tenant": TENANT_A, "secrets": [PLIVO_TOKEN]},
            {
                "provider": "plivo",
                "name": "basic",
                "tenant": TENANT_A,
                "secrets": [PLIVO_TOKEN],
                "basic_auth": ["hook:old-password", "hook:new-password"],
            },
        ],
    }


def _public_url(connection: str = "main", query: str = "") -> str:
    return f"{PUBLIC_BASE}/webhooks/plivo/{connection}" + (f"?{query}" if query else "")


def _send(client, params, *, query: str = "", nonce: str = "31415926535897932384"):
    headers = {SIGNATURE: plivo_signature(_public_url(query=query), params, nonce), NONCE: nonce}
    path = "/webhooks/plivo/main" + (f"?{query}" if query else "")
    return client.post(path, data=form_body(params), headers=headers, content_type=FORM)


def _api_message(client, provider_message_id: str) -> dict:
    response = client.get(f"/api/v1/providers/plivo/messages/{provider_message_id}", headers=AUTH_A)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


class TestPlivoSecurity(WebhookSecuritySuite):
    provider = "plivo"
    signature_headers = (SIGNATURE, NONCE)

    def genuine(self, *, body=None, secret=None, url_connection=None, timestamp=None) -> Req:
        # The nonce is random, not a timestamp: `timestamp` has nothing to change.
        body = body or form_body(inbound_params("5ec0a1b2-0000-4000-8000-00000000dead"))
        params = parse_qsl(body.decode(), keep_blank_values=True)
        nonce = "27182818284590452353"
        signature = plivo_signature(
            _public_url(url_connection or self.connection), params, nonce, secret or PLIVO_TOKEN
        )
        return Req(body=body, headers={SIGNATURE: signature, NONCE: nonce}, content_type=FORM)


class TestEndToEnd:
    def test_inbound_mms_is_acknowledged_and_readable(self, client):
        response = _send(client, inbound_params(UUID, text="Photos \U0001f4f7", media=MEDIA[:2]))
        assert response.status_code == 200
        assert response.get_data() == b"<Response/>"
        assert response.mimetype == "application/xml"

        message = _api_message(client, UUID)
        assert client.get(f"/api/v1/messages/{message['id']}", headers=AUTH_A).get_json() == message
        assert message["provider"] == "plivo" and message["direction"] == "inbound"
        assert message["status"] == "received"
        assert message["from"] == "+14155550100" and message["to"] == ["+15551234567"]
        assert message["text"] == "Photos \U0001f4f7"
        # Plivo declares no content type per file: the sniffed type will be the only one.
        assert [(a["index"], a["status"], a["declaredContentType"]) for a in message["attachments"]] == [
            (0, "pending", None),
            (1, "pending", None),
        ]

    def test_signed_url_with_a_query_string(self, client):
        response = _send(client, inbound_params(), query="account=a&flag=")
        assert response.status_code == 200

    def test_delivered_then_late_sent_keeps_delivered(self, client):
        uuid = "0d0d0d0d-0000-4000-8000-000000000001"
        delivered = status_params(uuid, "delivered", delivery_report_time="2026-01-02 03:04:09.000000")
        for params in (delivered, status_params(uuid, "sent")):
            assert _send(client, params).status_code == 200
        assert _send(client, delivered, nonce="another-nonce").status_code == 200  # a retry: a duplicate
        message = _api_message(client, uuid)
        assert message["status"] == "delivered" and message["direction"] == "outbound"
        assert message["from"] == "+15551234567" and message["to"] == ["+14155550100"]
        assert [(h["status"], h["applied"], h["occurredAt"]) for h in message["statusHistory"]] == [
            ("delivered", True, "2026-01-02T03:04:09Z"),
            ("sent", False, "2026-01-02T03:04:02Z"),
        ]

    def test_failed_keeps_the_error_code(self, client):
        uuid = "0d0d0d0d-0000-4000-8000-000000000002"
        assert _send(client, status_params(uuid, "failed", error_code="420")).status_code == 200
        history = _api_message(client, uuid)["statusHistory"]
        assert [(h["status"], h["providerStatus"], h["errorCode"]) for h in history] == [("failed", "failed", "420")]
