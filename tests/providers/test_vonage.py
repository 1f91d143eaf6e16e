"""Vonage adapter: the SDK signature vectors of docs/providers.md, the Messages API JWT, the parsing table
(SMS API form and JSON, delivery receipts, Messages API), both security suites, and the webhooks end to
end through the read API."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import socket
import time
import warnings
from datetime import UTC, datetime
from urllib.parse import parse_qsl

import pytest
import sqlalchemy as sa
from werkzeug.datastructures import Headers

from tests.fixtures.app import TENANT_A, USER_A
from tests.support.vonage import (
    VONAGE_SIGNATURE_SECRET,
    delivery_receipt,
    form_body,
    inbound_sms,
    messages_inbound,
    messages_jwt,
    messages_status,
    post_messages_api,
    post_sms_form,
    signed_params,
    sms_signature,
)
from webhook_service.config.model import Connection
from webhook_service.database.tables import Message
from webhook_service.model.events import MediaRef, MessageEvent, StatusEvent
from webhook_service.providers import ADAPTERS, ParseFailed, VerificationFailed, WebhookRequest
from webhook_service.providers.vonage import MESSAGES_STATUSES, SMS_STATUSES

from .security_suite import GARBAGE_SIGNATURES, Req, TimestampSecurityTests, WebhookSecuritySuite, count

ADAPTER = ADAPTERS["vonage"]
AUTH_A = {"Authorization": "Basic " + base64.b64encode(":".join(USER_A).encode()).decode()}
UTC = UTC
FORM = "application/x-www-form-urlencoded"
JSON = "application/json"
WINDOW = 25 * 3600

# docs/providers.md, "Vonage": the sha256 vector of Vonage's Python HTTP client tests (sign_params).
VECTOR = {
    "secret": "signature_secret",
    "timestamp": 1234567890,
    "params": {"param1": "value1", "param2": "value2", "timestamp": "1234567890"},
    "sig": "280c4320703dbc98bfa22db676655ed2acfbfe8792b062ff7622e67f1183c287",
}
# Vonage's Python SDK tests (check_signature), the dashboard's default "MD5 hash" method.
SDK_MD5HASH_VECTOR = {
    "secret": "secret",
    "timestamp": 1461605396,
    "params": {"a": "1", "b": "2", "timestamp": "1461605396"},
    "sig": "6af838ef94998832dbfc29020b564830",
}


@pytest.fixture
def settings_overrides() -> dict:
    secrets = [VONAGE_SIGNATURE_SECRET]
    return {
        "connections": [
            {"provider": "vonage", "name": "main", "tenant": TENANT_A, "secrets": secrets},
            {
                "provider": "vonage",
                "name": "basic",
                "tenant": TENANT_A,
                "secrets": secrets,
                "basic_auth": ["hook:old-password", "hook:new-password"],
            },
            {
                "provider": "vonage",
                "name": "legacy",
                "tenant": TENANT_A,
                "secrets": secrets,
                "options": {"signature_method": "md5hash"},
            },
        ]
    }


@pytest.fixture
def resolver():
    """No DNS here: media hosts do not resolve, so attachments stay pending (and no test waits)."""

    def unresolvable(host: str, port: int) -> list[str]:
        raise socket.gaierror(socket.EAI_NONAME, host)

    return unresolvable


def _request(
    body: bytes, content_type: str, headers: dict | None = None, received_at: datetime | None = None
) -> WebhookRequest:
    return WebhookRequest(
        method="POST",
        url="https://hooks.example.com/webhooks/vonage/t",
        headers=Headers({"Content-Type": content_type, **(headers or {})}),
        body=body,
        received_at=received_at or datetime.now(UTC),
    )


def _connection(*secrets: str, method: str | None = None) -> Connection:
    return Connection(
        provider="vonage", name="t", secrets=list(secrets), options={"signature_method": method} if method else {}
    )


def _segment(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _at(timestamp: int) -> datetime:
    return datetime.fromtimestamp(timestamp + 10, UTC)


class TestSmsSignatureVectors:
    def test_the_providers_vector(self):
        assert sms_signature(VECTOR["params"], secret=VECTOR["secret"]) == VECTOR["sig"]
        body = form_body({**VECTOR["params"], "sig": VECTOR["sig"]})
        ADAPTER.verify(_request(body, FORM, received_at=_at(VECTOR["timestamp"])), _connection(VECTOR["secret"]))

    def test_hex_is_compared_case_insensitively_and_json_posts_are_signed_alike(self):
        body = json.dumps({**VECTOR["params"], "sig": VECTOR["sig"].upper()}).encode()
        ADAPTER.verify(_request(body, JSON, received_at=_at(VECTOR["timestamp"])), _connection(VECTOR["secret"]))

    def test_the_sdk_md5hash_vector(self):
        assert (
            sms_signature(SDK_MD5HASH_VECTOR["params"], secret="secret", method="md5hash") == SDK_MD5HASH_VECTOR["sig"]
        )
        body = form_body({**SDK_MD5HASH_VECTOR["params"], "sig": SDK_MD5HASH_VECTOR["sig"]})
        request = _request(body, FORM, received_at=_at(SDK_MD5HASH_VECTOR["timestamp"]))
        ADAPTER.verify(request, _connection("secret", method="md5hash"))
        with pytest.raises(VerificationFailed):
            ADAPTER.verify(request, _connection("secret"))  # the method must match the dashboard's

    @pytest.mark.parametrize("method", ["md5", "sha1", "sha256", "sha512"])
    def test_each_hmac_method_and_the_replacement_of_ampersand_and_equals(self, method):
        params = {"text": "Tom & Jerry = fun", "timestamp": "1700000000"}
        expected = hmac.new(b"k3y", b"&text=Tom _ Jerry _ fun&timestamp=1700000000", method).hexdigest()
        request = _request(form_body({**params, "sig": expected}), FORM, received_at=_at(1700000000))
        ADAPTER.verify(request, _connection("old-secret", "k3y", method=method))

    def test_the_vector_is_stale_today(self):
        body = form_body({**VECTOR["params"], "sig": VECTOR["sig"]})
        with pytest.raises(VerificationFailed) as failure:
            ADAPTER.verify(_request(body, FORM), _connection(VECTOR["secret"]))
        assert failure.value.code == "stale_timestamp"

    def test_signature_method_option(self):
        assert ADAPTER.options(_connection("s")).signature_method == "sha256"
        assert ADAPTER.validate_options(_connection("s", method="md5hash")) is None
        assert "signature_method" in ADAPTER.validate_options(_connection("s", method="crc32"))
        misspelt = Connection(provider="vonage", options={"sig_method": "md5"})
        assert "options.sig_method" in ADAPTER.validate_options(misspelt)


class TestMessagesApiJwt:
    BODY = messages_inbound("6d2b7a30-7d0a-4b7e-9f0a-0123456789ab")

    def _verify(self, token: str, body: bytes = BODY, secrets=(VONAGE_SIGNATURE_SECRET,)) -> None:
        ADAPTER.verify(_request(body, JSON, {"Authorization": f"Bearer {token}"}), _connection(*secrets))

    def _refused(self, token: str, body: bytes = BODY) -> str:
        with pytest.raises(VerificationFailed) as failure:
            self._verify(token, body)
        return failure.value.code

    def test_a_genuine_token_verifies_with_rotation(self):
        self._verify(messages_jwt(self.BODY), secrets=("old", VONAGE_SIGNATURE_SECRET))
        ADAPTER.verify(
            _request(self.BODY, JSON, {"Authorization": "bearer " + messages_jwt(self.BODY)}),
            _connection(VONAGE_SIGNATURE_SECRET),
        )

    @pytest.mark.parametrize(
        "header",
        [
            {"alg": "none", "typ": "JWT"},
            {"alg": "HS512"},
            {"alg": "RS256"},
            {"alg": "hs256"},
            {"typ": "JWT"},
            {"alg": ["HS256"]},
        ],
    )
    def test_only_hs256_is_accepted(self, header):
        assert self._refused(messages_jwt(self.BODY, header=header)) == "unsupported_algorithm"

    def test_an_unsigned_none_token_is_refused(self):
        signed = messages_jwt(self.BODY, header={"alg": "none"})
        assert self._refused(signed.rsplit(".", 1)[0] + ".") == "unsupported_algorithm"

    def test_wrong_secret(self):
        assert self._refused(messages_jwt(self.BODY, secret="wrong")) == "invalid_signature"

    def test_the_body_is_bound_by_payload_hash(self):
        assert self._refused(messages_jwt(self.BODY), body=self.BODY.replace(b"Hi", b"Ho")) == "invalid_signature"
        assert self._refused(messages_jwt(self.BODY, claims={"payload_hash": None})) == "missing_signature"

    @pytest.mark.parametrize("iat", [None, "1700000000", True, 1.5])
    def test_iat_must_be_a_unix_time(self, iat):
        token = messages_jwt(self.BODY, claims={"iat": iat} if iat is not None else {"iat": None})
        assert self._refused(token) == "malformed_timestamp"

    def test_iat_outside_the_window(self):
        assert self._refused(messages_jwt(self.BODY, iat=int(time.time()) - WINDOW - 60)) == "stale_timestamp"
        assert self._refused(messages_jwt(self.BODY, iat=int(time.time()) + WINDOW + 60)) == "stale_timestamp"

    @pytest.mark.parametrize(
        "token",
        [
            "",
            "a.b",
            "a.b.c.d",
            "!!.e30.sig",
            "e30.e30.@@",
            "W10.e30.c2ln",
            "bm90IGpzb24.e30.c2ln",
            "e30." + "A" * 5000 + ".c2ln",
            "x.y.z",
        ],
    )
    def test_malformed_tokens(self, token):
        assert self._refused(token) in {"malformed_signature", "unsupported_algorithm"}

    def test_a_second_spelling_of_a_genuine_token_is_refused(self):
        genuine = messages_jwt(self.BODY)
        header, claims, signature = genuine.split(".")
        assert self._refused(f"{genuine}=") == "malformed_signature"  # padded
        # The last character of a 32-byte signature carries 4 bits and 2 zero bits: the next character of
        # the alphabet spells the same bytes with a trailing bit set.
        respelt = f"{header}.{claims}.{signature[:-1]}{chr(ord(signature[-1]) + 1)}"
        assert self._refused(respelt) == "malformed_signature"

    def test_deeply_nested_json_is_malformed_not_an_error(self):
        nested = _segment(b"[" * 1400 + b"]" * 1400)  # deeper than the json module recurses; under 4096
        assert self._refused(f"{nested}.e30.c2ln") == "malformed_signature"
        signing_input = _segment(json.dumps({"alg": "HS256"}).encode()) + "." + nested
        signature = hmac.new(VONAGE_SIGNATURE_SECRET.encode(), signing_input.encode(), hashlib.sha256).digest()
        assert self._refused(f"{signing_input}.{_segment(signature)}") == "malformed_signature"

    def test_a_short_secret_verifies_as_vonage_signs_with_it_and_warns_of_nothing(self):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            self._verify(messages_jwt(self.BODY, secret="k3y"), secrets=("k3y",))

    def test_a_secret_pyjwt_will_not_take_as_an_hmac_key_leaves_the_others_to_verify(self):
        pem_shaped = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA\n-----END PUBLIC KEY-----"
        self._verify(messages_jwt(self.BODY), secrets=(pem_shaped, VONAGE_SIGNATURE_SECRET))
        with pytest.raises(VerificationFailed) as failure:
            self._verify(messages_jwt(self.BODY), secrets=(pem_shaped,))
        assert failure.value.code == "invalid_signature"

    def test_the_window_is_measured_from_the_arrival_time(self):
        """An operator's replay of a quarantined request verifies at the time it first arrived; exp and nbf
        (which Vonage does not send) are not checked against the clock either."""
        issued = int(time.time()) - 3 * WINDOW
        token = messages_jwt(self.BODY, iat=issued, claims={"exp": issued + 60, "nbf": issued + 3600})
        arrived = _request(self.BODY, JSON, {"Authorization": f"Bearer {token}"}, received_at=_at(issued))
        ADAPTER.verify(arrived, _connection(VONAGE_SIGNATURE_SECRET))
        assert self._refused(token) == "stale_timestamp"


# Table-driven parsing -----------------------------------------------------------------------------

MESSAGE_ID = "0A0000000123ABCD1"
THEM, US = "447700900001", "15551234567"
UUID = "aaaaaaaa-bbbb-cccc-dddd-0123456789ab"
SENT_AT = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
SCTS_AT = datetime(2026, 1, 2, 3, 4, tzinfo=UTC)
IMAGE_URL = "https://api-eu.nexmo.com/v3/media/c1c2c3c4-0000-4000-8000-000000000001"


def _inbound_event(**fields) -> MessageEvent:
    return MessageEvent(MESSAGE_ID, "inbound", THEM, (US,), **{"text": "Hello world", "occurred_at": SENT_AT, **fields})


def _receipt(status: str, **fields) -> StatusEvent:
    return StatusEvent(
        MESSAGE_ID, SMS_STATUSES[status], status, **{"occurred_at": SCTS_AT, "from_": US, "to": (THEM,), **fields}
    )


def _messages_status_event(status: str, **fields) -> StatusEvent:
    return StatusEvent(UUID, MESSAGES_STATUSES[status], status, SENT_AT, **{"from_": US, "to": (THEM,), **fields})


def _json(params: dict) -> bytes:
    return json.dumps(params).encode()


CONCAT = {"concat": "true", "concat-ref": "2C", "concat-total": "2", "concat-part": "1"}
REJECTED = {
    "type": "https://developer.vonage.com/api-errors/messages#1000",
    "title": 1000,
    "detail": "Throttled - You have exceeded the submission capacity allowed on this account.",
    "instance": "bf0ca0bf927b3b52e3cb03217e1a1ddf",
}

PARSE_CASES = [
    # SMS API, inbound.
    ("inbound sms, form POST", FORM, form_body(inbound_sms()), [_inbound_event()]),
    ("inbound sms, JSON POST", JSON, _json(inbound_sms()), [_inbound_event()]),
    (
        "signed: timestamp, nonce and sig are not content",
        FORM,
        form_body(signed_params(inbound_sms())),
        [_inbound_event()],
    ),
    (
        "unicode and emoji",
        FORM,
        form_body(inbound_sms(text="Caf\u00e9 \U0001f600\U0001f44d\U0001f3fd \u4f60\u597d", type="unicode")),
        [_inbound_event(text="Caf\u00e9 \U0001f600\U0001f44d\U0001f3fd \u4f60\u597d")],
    ),
    (
        "a part of a long message, kept as its own message",
        FORM,
        form_body(inbound_sms(**CONCAT)),
        [_inbound_event(extra={"concatRef": "2C", "concatTotal": 2, "concatPart": 1})],
    ),
    (
        "JSON numbers where Vonage sends strings",
        JSON,
        _json({**inbound_sms(), **CONCAT, "concat-total": 2, "concat-part": 1}),
        [_inbound_event(extra={"concatRef": "2C", "concatTotal": 2, "concatPart": 1})],
    ),
    (
        "a binary message",
        FORM,
        form_body({**inbound_sms(), "type": "binary", "text": "", "data": "48656c6c6f", "udh": "050003cc0201"}),
        [_inbound_event(text=None, extra={"binaryData": "48656c6c6f", "udh": "050003cc0201"})],
    ),
    (
        "unknown fields are ignored",
        FORM,
        form_body(inbound_sms(**{"new-field": "x", "network-code": "23410"})),
        [_inbound_event()],
    ),
    (
        "an unreadable message-timestamp",
        FORM,
        form_body(inbound_sms(**{"message-timestamp": "soon"})),
        [_inbound_event(occurred_at=None)],
    ),
    # SMS API, delivery receipts.
    *[
        (f"delivery receipt {status}", FORM, form_body(delivery_receipt(MESSAGE_ID, status)), [_receipt(status)])
        for status in SMS_STATUSES
    ],
    (
        "a receipt with an error code",
        FORM,
        form_body(delivery_receipt(MESSAGE_ID, "failed", err_code="5")),
        [_receipt("failed", error_code="5")],
    ),
    (
        "a receipt without scts: message-timestamp",
        JSON,
        _json({**delivery_receipt(MESSAGE_ID, "delivered"), "scts": "not-a-time"}),
        [_receipt("delivered", occurred_at=datetime(2026, 1, 2, 3, 4, 6, tzinfo=UTC))],
    ),
    (
        "an unmapped receipt status",
        FORM,
        form_body(delivery_receipt(MESSAGE_ID, "held")),
        [StatusEvent(MESSAGE_ID, "unknown", "held", SCTS_AT, from_=US, to=(THEM,))],
    ),
    # Messages API.
    (
        "messages api inbound sms",
        JSON,
        messages_inbound(UUID),
        [MessageEvent(UUID, "inbound", THEM, (US,), text="Hi", occurred_at=SENT_AT)],
    ),
    (
        "messages api inbound mms image with caption",
        JSON,
        messages_inbound(
            UUID,
            channel="mms",
            message_type="image",
            text=None,
            media={"url": IMAGE_URL, "caption": "Look \U0001f600", "name": "cat.jpg"},
        ),
        [
            MessageEvent(
                UUID,
                "inbound",
                THEM,
                (US,),
                text="Look \U0001f600",
                occurred_at=SENT_AT,
                media=(MediaRef(IMAGE_URL, name="cat.jpg"),),
            )
        ],
    ),
    (
        "messages api addresses as objects (older payloads)",
        JSON,
        _json(
            {
                "message_uuid": UUID,
                "from": {"type": "sms", "number": THEM},
                "to": {"type": "sms", "number": US},
                "timestamp": "2026-01-02T03:04:05.000Z",
                "message": {"content": {"type": "text", "text": "Hi"}},
            }
        ),
        [MessageEvent(UUID, "inbound", THEM, (US,), occurred_at=SENT_AT)],
    ),
    *[
        (f"messages api status {status}", JSON, messages_status(UUID, status), [_messages_status_event(status)])
        for status in MESSAGES_STATUSES
    ],
    (
        "messages api rejection with its error",
        JSON,
        messages_status(UUID, "rejected", error=REJECTED),
        [_messages_status_event("rejected", error_code="1000", error_message=REJECTED["detail"])],
    ),
    (
        "messages api error code from the type URL",
        JSON,
        messages_status(
            UUID,
            "undeliverable",
            error={"type": "https://developer.vonage.com/api-errors/messages#1320", "title": "Provider unavailable"},
        ),
        [_messages_status_event("undeliverable", error_code="1320")],
    ),
    (
        "messages api unmapped status",
        JSON,
        messages_status(UUID, "deleted"),
        [StatusEvent(UUID, "unknown", "deleted", SENT_AT, from_=US, to=(THEM,))],
    ),
    # Malformed.
    ("neither messageId nor message_uuid", FORM, b"msisdn=447700900001&text=hi", "invalid_payload"),
    ("an empty messageId", FORM, form_body(inbound_sms(message_id="")), "invalid_payload"),
    ("message_uuid is an object", JSON, _json({"message_uuid": {"id": 1}, "text": "x"}), "invalid_payload"),
    ("an msisdn longer than any address", FORM, form_body(inbound_sms(sender="4" * 65)), "invalid_payload"),
    ("a status longer than any status", JSON, messages_status(UUID, "x" * 65), "invalid_payload"),
    (
        "an image name longer than any file name",
        JSON,
        messages_inbound(UUID, message_type="image", media={"url": IMAGE_URL, "name": "n" * 256}),
        "invalid_payload",
    ),
    ("empty form body", FORM, b"", "invalid_payload"),
    ("malformed form body", FORM, b"msisdn=1&&=&text", "invalid_form"),
    ("JSON sent as a form", FORM, _json(inbound_sms()), "invalid_form"),
    ("truncated JSON", JSON, _json(inbound_sms())[:-10], "invalid_json"),
    ("form body sent as JSON", JSON, form_body(inbound_sms()), "invalid_json"),
    ("JSON that is not an object", JSON, b'[{"messageId": "x"}]', "invalid_json"),
    ("empty JSON body", JSON, b"", "invalid_json"),
    ("not UTF-8", FORM, b"msisdn=447700900001&messageId=x&text=caf\xe9", "invalid_encoding"),
]


@pytest.mark.parametrize("label, content_type, body, expected", PARSE_CASES, ids=[case[0] for case in PARSE_CASES])
def test_parse(label, content_type, body, expected):
    request = _request(body, content_type)
    if isinstance(expected, str):
        with pytest.raises(ParseFailed) as failure:
            ADAPTER.parse(request, _connection(VONAGE_SIGNATURE_SECRET))
        assert failure.value.code == expected
    else:
        assert ADAPTER.parse(request, _connection(VONAGE_SIGNATURE_SECRET)) == expected


def test_media_credentials_go_to_vonage_hosts_only():
    connection = Connection(
        provider="vonage", media_auth={"kind": "header", "header": "Authorization", "value": "Bearer app-jwt"}
    )
    credentials = ADAPTER.media_credentials(connection, IMAGE_URL)
    assert credentials.headers == {"Authorization": "Bearer app-jwt"}
    assert credentials.applies_to("api-us.nexmo.com") and credentials.applies_to("api-eu.nexmo.com")
    assert not credentials.applies_to("media.example.com") and not credentials.applies_to("nexmo.com.example.com")
    assert ADAPTER.media_credentials(Connection(provider="vonage"), IMAGE_URL) is None


def test_every_documented_status_is_mapped():
    assert set(SMS_STATUSES) == {"delivered", "expired", "failed", "rejected", "accepted", "buffered", "unknown"}
    assert set(MESSAGES_STATUSES) == {"submitted", "delivered", "read", "rejected", "undeliverable"}


# Security -----------------------------------------------------------------------------------------


def _unsigned(params: dict[str, str]) -> dict[str, str]:
    return {key: value for key, value in params.items() if key not in ("sig", "timestamp", "nonce")}


class TestVonageSmsSecurity(WebhookSecuritySuite, TimestampSecurityTests):
    """The SMS API signs the body's own parameters: `sig` travels in the body, not in a header."""

    provider = "vonage"
    signature_headers = ()
    tolerance = WINDOW

    def genuine(self, *, body=None, secret=None, url_connection=None, timestamp=None) -> Req:
        params = _unsigned(dict(parse_qsl(body.decode()))) if body else inbound_sms("sec-1")
        signed = signed_params(params, secret=secret or VONAGE_SIGNATURE_SECRET, timestamp=timestamp)
        return Req(body=form_body(signed), content_type=FORM)

    def _params(self) -> dict[str, str]:
        return dict(parse_qsl(self.genuine().body.decode()))

    def test_signature_over_a_different_body(self, client, runtime):
        tampered = {**self._params(), "text": "Send the money to account 42"}
        self._refused(client, runtime, Req(body=form_body(tampered), content_type=FORM))

    def test_missing_sig_or_timestamp_parameter(self, client, runtime):
        for missing in ("sig", "timestamp"):
            params = {key: value for key, value in self._params().items() if key != missing}
            self._refused(client, runtime, Req(body=form_body(params), content_type=FORM))
            self._clear_quarantine(runtime)

    def test_malformed_sig_values_are_401_never_500(self, client, runtime):
        for garbage in [*GARBAGE_SIGNATURES, "0" * 300]:
            body = form_body({**self._params(), "sig": garbage})
            assert self.send(client, Req(body=body, content_type=FORM)).status_code == 401, garbage
        for body in (b"sig=abc&sig=abc&timestamp=1", b'{"sig": "abc", "timestamp": {"n": 1}}'):
            response = self.send(client, Req(body=body, content_type=JSON if body.startswith(b"{") else FORM))
            assert response.status_code == 401, body
        assert count(runtime, Message) == 0

    def test_a_signed_json_post(self, client):
        params = signed_params(inbound_sms("sec-json"))
        assert self.send(client, Req(body=_json(params), content_type=JSON)).status_code == 200


class TestVonageMessagesApiSecurity(WebhookSecuritySuite, TimestampSecurityTests):
    """The Messages API signs with a bearer JWT in the Authorization header."""

    provider = "vonage"
    signature_headers = ("Authorization",)
    tolerance = WINDOW
    # The bearer token occupies Authorization, where Basic credentials would go: Messages API webhooks
    # cannot pass a connection that requires Basic auth (see the test below), so the suite's two Basic
    # auth tests do not apply to this scheme.
    test_basic_auth_rotation = None
    test_basic_auth_wrong_or_missing = None

    def genuine(self, *, body=None, secret=None, url_connection=None, timestamp=None) -> Req:
        body = body or messages_inbound("6d2b7a30-7d0a-4b7e-9f0a-0123456789ab")
        token = messages_jwt(body, secret=secret or VONAGE_SIGNATURE_SECRET, iat=timestamp)
        return Req(body=body, headers={"Authorization": f"Bearer {token}"})

    def test_a_connection_with_basic_auth_refuses_messages_api_webhooks(self, client, runtime):
        self._refused(client, runtime, self.genuine(), connection=self.basic_connection)

    def test_an_alg_none_token_is_refused(self, client, runtime):
        unsigned = messages_jwt(self.genuine().body, header={"alg": "none"}).rsplit(".", 1)[0] + "."
        self._refused(client, runtime, self.genuine().with_header("Authorization", f"Bearer {unsigned}"))


# End to end ---------------------------------------------------------------------------------------


def _api_message(client, provider_message_id: str) -> dict:
    response = client.get(f"/api/v1/providers/vonage/messages/{provider_message_id}", headers=AUTH_A)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


class TestEndToEnd:
    def test_inbound_sms_form_post(self, client):
        response = post_sms_form(client, signed_params(inbound_sms("e2e-sms", text="Caf\u00e9 \U0001f600")))
        assert response.status_code == 200
        assert response.get_data() == b"" and response.mimetype == "text/plain"
        message = _api_message(client, "e2e-sms")
        assert message["direction"] == "inbound" and message["status"] == "received"
        assert message["from"] == "+447700900001" and message["to"] == ["+15551234567"]
        assert message["text"] == "Caf\u00e9 \U0001f600"
        by_id = client.get(f"/api/v1/messages/{message['id']}", headers=AUTH_A).get_json()
        assert by_id["providerMessageId"] == "e2e-sms"

    def test_the_parts_of_a_long_message_stay_separate_with_their_concat_fields(self, client, runtime):
        for part, text in ((1, "The first half "), (2, "and the second.")):
            params = inbound_sms(f"e2e-part-{part}", text=text, **{**CONCAT, "concat-part": str(part)})
            assert post_sms_form(client, signed_params(params)).status_code == 200
        with runtime.db.reading() as session:
            parts = session.execute(sa.select(Message.text, Message.extra).order_by(Message.seq)).all()
        assert [(text, extra["concatRef"], extra["concatPart"], extra["concatTotal"]) for text, extra in parts] == [
            ("The first half ", "2C", 1, 2),
            ("and the second.", "2C", 2, 2),
        ]

    def test_legacy_md5hash_connection(self, client):
        params = signed_params(inbound_sms("e2e-md5"), method="md5hash")
        assert post_sms_form(client, params).status_code == 401  # main expects sha256
        assert post_sms_form(client, params, connection="legacy").status_code == 200

    def test_receipts_delivered_then_a_late_accepted_keeps_delivered(self, client):
        delivered = signed_params(delivery_receipt("e2e-dlr", "delivered", scts="2601020305"))
        late = signed_params(delivery_receipt("e2e-dlr", "accepted", scts="2601020304"))
        for params in (delivered, late, late):
            assert post_sms_form(client, params).status_code == 200
        message = _api_message(client, "e2e-dlr")
        assert message["direction"] == "outbound" and message["status"] == "delivered"
        assert message["from"] == "+15551234567" and message["to"] == ["+447700900001"]
        assert [(h["status"], h["providerStatus"], h["applied"]) for h in message["statusHistory"]] == [
            ("delivered", "delivered", True),
            ("sent", "accepted", False),
        ]

    def test_messages_api_inbound_mms(self, client):
        body = messages_inbound(
            "e2e-mms", channel="mms", message_type="image", text=None, media={"url": IMAGE_URL, "caption": "A cat"}
        )
        response = post_messages_api(client, body)
        assert response.status_code == 200
        message = _api_message(client, "e2e-mms")
        assert message["from"] == "+447700900001" and message["text"] == "A cat"
        assert [(a["declaredContentType"], a["status"]) for a in message["attachments"]] == [(None, "pending")]

    def test_messages_api_delivered_then_a_late_submitted_keeps_delivered(self, client):
        delivered = messages_status("e2e-status", "delivered", timestamp="2026-01-02T03:05:00.000Z")
        late = messages_status("e2e-status", "submitted", timestamp="2026-01-02T03:04:00.000Z")
        for body in (delivered, late, late):
            assert post_messages_api(client, body).status_code == 200
        message = _api_message(client, "e2e-status")
        assert message["status"] == "delivered" and message["to"] == ["+447700900001"]
        assert [(h["status"], h["providerStatus"], h["applied"]) for h in message["statusHistory"]] == [
            ("delivered", "delivered", True),
            ("sent", "submitted", False),
        ]


def test_a_jwt_over_a_hash_of_the_body_is_not_a_jwt_over_the_body():
    """payload_hash is the hex sha256 of the raw bytes, not of a re-serialized JSON object."""
    body = b'{"message_uuid": "u-1",  "text": "spaced"}'
    reserialized = json.dumps(json.loads(body)).encode()
    token = messages_jwt(body, claims={"payload_hash": hashlib.sha256(reserialized).hexdigest()})
    with pytest.raises(VerificationFailed):
        ADAPTER.verify(_request(body, JSON, {"Authorization": f"Bearer {token}"}), _connection(VONAGE_SIGNATURE_SECRET))
