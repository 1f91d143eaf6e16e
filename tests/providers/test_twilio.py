"""Twilio adapter: the official vectors, the parsing table, the security suite, public-URL
reconstruction, media credentials, and the whole path through the intake to the read API."""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime
from urllib.parse import parse_qsl, quote

import pytest
from werkzeug.datastructures import Headers

from tests.fixtures.app import TENANT_A, USER_A
from tests.support.twilio import (
    ACCOUNT_SID,
    TWILIO_TOKEN,
    form_body,
    inbound_params,
    media_url,
    status_params,
    twilio_signature,
)
from webhook_service.config.model import Connection, MediaAuth
from webhook_service.model.credentials import Credentials
from webhook_service.model.events import MediaRef, MessageEvent, StatusEvent
from webhook_service.providers import ADAPTERS, ParseFailed, VerificationFailed, WebhookRequest

from .security_suite import Req, WebhookSecuritySuite

ADAPTER = ADAPTERS["twilio"]
FORM = "application/x-www-form-urlencoded"
SIGNATURE = "X-Twilio-Signature"
PUBLIC_BASE = "https://hooks.example.com"
EDGE_URL = "https://edge.example.net/sms/twilio"
AUTH_A = {"Authorization": "Basic " + base64.b64encode(":".join(USER_A).encode()).decode()}

SMS_SID = "SM" + "be794ce78f6b9fdf853d2acb76c080db"
MMS_SID = "MM" + "5f" * 16
MEDIA = [
    media_url(MMS_SID, "ME" + "0a" * 16),
    media_url(MMS_SID, "ME" + "0b" * 16),
    media_url(MMS_SID, "ME" + "0c" * 16),
]

# Twilio's documentation (docs/providers.md, "Twilio"): auth token 12345.
VECTOR_URL = "https://mycompany.com/myapp.php?foo=1&bar=2"
VECTOR_PARAMS = [
    ("CallSid", "CA1234567890ABCDE"),
    ("Caller", "+14158675309"),
    ("Digits", "1234"),
    ("From", "+14158675309"),
    ("To", "+18005551212"),
]
VECTOR_SIGNATURE = "RSOYDt4T1cUTdK1PDd93/VVr8B8="
VECTOR_JSON_BODY = b'{"property": "value", "boolean": true}'
VECTOR_JSON_SHA256 = "0a1ff7634d9ab3b95db5c9a2dfe9416e41502b283a80c7cf19632632f96e6620"
VECTOR_JSON_SIGNATURE = "a9nBmqA0ju/hNViExpshrM61xv4="


def _connection(*secrets: str, media_auth: MediaAuth | None = None) -> Connection:
    return Connection(provider="twilio", name="t", secrets=list(secrets or [TWILIO_TOKEN]), media_auth=media_auth)


def _request(
    body: bytes,
    *,
    url: str = f"{PUBLIC_BASE}/webhooks/twilio/main",
    content_type: str = FORM,
    signature: str | None = None,
) -> WebhookRequest:
    headers = {"Content-Type": content_type}
    if signature is not None:
        headers[SIGNATURE] = signature
    return WebhookRequest(method="POST", url=url, headers=Headers(headers), body=body)


def _verify(request: WebhookRequest, *secrets: str) -> None:
    ADAPTER.verify(request, _connection(*secrets))


def _refusal(request: WebhookRequest, *secrets: str) -> str:
    with pytest.raises(VerificationFailed) as failure:
        _verify(request, *secrets)
    return failure.value.code


class TestOfficialVectors:
    def test_the_signer_used_by_these_tests_reproduces_both_vectors(self):
        assert twilio_signature(VECTOR_URL, VECTOR_PARAMS) == VECTOR_SIGNATURE
        assert hashlib.sha256(VECTOR_JSON_BODY).hexdigest() == VECTOR_JSON_SHA256
        assert twilio_signature(f"{VECTOR_URL}&bodySHA256={VECTOR_JSON_SHA256}") == VECTOR_JSON_SIGNATURE

    def test_form_vector_verifies(self):
        _verify(_request(form_body(VECTOR_PARAMS), url=VECTOR_URL, signature=VECTOR_SIGNATURE))

    def test_json_vector_verifies_over_the_url_and_the_body_hash(self):
        url = f"{VECTOR_URL}&bodySHA256={VECTOR_JSON_SHA256}"
        _verify(_request(VECTOR_JSON_BODY, url=url, content_type="application/json", signature=VECTOR_JSON_SIGNATURE))

    def test_json_body_that_does_not_match_its_hash_is_refused(self):
        url = f"{VECTOR_URL}&bodySHA256={VECTOR_JSON_SHA256}"
        tampered = VECTOR_JSON_BODY.replace(b"true", b"false")
        assert (
            _refusal(_request(tampered, url=url, content_type="application/json", signature=VECTOR_JSON_SIGNATURE))
            == "invalid_body_hash"
        )

    @pytest.mark.parametrize(
        "received_url, signed_url",
        [
            ("https://mycompany.com:443/myapp.php?foo=1&bar=2", VECTOR_URL),  # port removed
            ("https://mycompany.com:8443/myapp.php?foo=1&bar=2", VECTOR_URL),  # any port removed
            (VECTOR_URL, "https://mycompany.com:443/myapp.php?foo=1&bar=2"),  # default port added
            ("http://mycompany.com/myapp.php?foo=1&bar=2", "http://mycompany.com:80/myapp.php?foo=1&bar=2"),
        ],
    )
    def test_port_forms_accepted_like_the_official_validator(self, received_url, signed_url):
        signature = twilio_signature(signed_url, VECTOR_PARAMS)
        _verify(_request(form_body(VECTOR_PARAMS), url=received_url, signature=signature))

    @pytest.mark.parametrize(
        "received_url",
        [
            "https://mycompany.com/myapp.php?foo=1&bar=3",
            "https://mycompany.com/other.php?foo=1&bar=2",
            "https://mycompany.net/myapp.php?foo=1&bar=2",
            "http://mycompany.com/myapp.php?foo=1&bar=2",
            "https://mycompany.com:99999/myapp.php?foo=1&bar=2",
        ],
    )
    def test_any_other_url_is_refused(self, received_url):
        assert (
            _refusal(_request(form_body(VECTOR_PARAMS), url=received_url, signature=VECTOR_SIGNATURE))
            == "invalid_signature"
        )

    def test_rotated_tokens_any_one_matches(self):
        _verify(
            _request(form_body(VECTOR_PARAMS), url=VECTOR_URL, signature=VECTOR_SIGNATURE),
            "the-old-token",
            TWILIO_TOKEN,
        )
        assert (
            _refusal(
                _request(form_body(VECTOR_PARAMS), url=VECTOR_URL, signature=VECTOR_SIGNATURE),
                "the-old-token",
                "another-token",
            )
            == "invalid_signature"
        )

    def test_repeated_parameters_sorted_with_or_without_duplicate_values(self):
        params = [("To", "+15550002222"), ("Body", "x"), ("To", "+15550001111"), ("To", "+15550001111")]
        url = f"{PUBLIC_BASE}/webhooks/twilio/main"
        every_value = twilio_signature(url, params)  # twilio-python keeps both copies
        distinct = twilio_signature(url, list(dict.fromkeys(params)))  # twilio-node keeps one
        assert every_value != distinct
        for signature in (every_value, distinct):
            _verify(_request(form_body(params), url=url, signature=signature))

    @pytest.mark.parametrize(
        "signature", ["", "not base64 !!!", "A" * 300, "\u00e9t\u00e9", "====", base64.b64encode(b"\x00" * 20).decode()]
    )
    def test_garbage_signatures_are_verification_failures(self, signature):
        with pytest.raises(VerificationFailed):
            _verify(_request(form_body(VECTOR_PARAMS), url=VECTOR_URL, signature=signature))

    @pytest.mark.parametrize(
        "body, url",
        [
            (b"\xff\xfe", VECTOR_URL),
            (b"not=a=form&&", VECTOR_URL),
            (b'{"json": "without a body hash"}', VECTOR_URL),
            (b"", "https://mycompany.com/myapp.php?bodySHA256=%FF%FE"),
            (b"a=1", "https://[::1/broken"),
            (b"a=1", "https://mycompany.com:port/x"),
        ],
    )
    def test_malformed_requests_are_verification_failures(self, body, url):
        with pytest.raises(VerificationFailed):
            _verify(_request(body, url=url, signature=VECTOR_SIGNATURE))


def _status(status: str, canonical_status: str, **fields) -> StatusEvent:
    return StatusEvent(SMS_SID, canonical_status, status, from_="+15551234567", to=("+15550001111",), **fields)


def _status_body(status: str, extra: str = "") -> bytes:
    return (
        f"SmsSid={SMS_SID}&SmsStatus={status}&MessageStatus={status}&To=%2B15550001111"
        f"&MessageSid={SMS_SID}&AccountSid={ACCOUNT_SID}&From=%2B15551234567&ApiVersion=2010-04-01"
        f"{extra}"
    ).encode()


def _inbound_body(
    body: str = "Hello+there%21", media: str = "&NumMedia=0", sid: str = SMS_SID, extra: str = ""
) -> bytes:
    return (
        f"ToCountry=US&ToState=CA&SmsMessageSid={sid}{media}&ToCity=SAN+FRANCISCO&FromZip=94105"
        f"&SmsSid={sid}&FromState=CA&SmsStatus=received&FromCity=SAN+FRANCISCO&Body={body}"
        f"&FromCountry=US&To=%2B15551234567&ToZip=94105&NumSegments=1&MessageSid={sid}"
        f"&AccountSid={ACCOUNT_SID}&From=%2B15550001111&ApiVersion=2010-04-01{extra}"
    ).encode()


def _inbound(text: str | None = "Hello there!", sid: str = SMS_SID, media=()) -> MessageEvent:
    return MessageEvent(sid, "inbound", "+15550001111", ("+15551234567",), text=text, media=tuple(media))


def _media_fields(*pairs: tuple[int, str, str]) -> str:
    return "".join(
        f"&MediaContentType{n}={quote(kind, safe='')}&MediaUrl{n}={quote(url, safe='')}" for n, kind, url in pairs
    )


# Every status of the mapping table, as Twilio names it, with the canonical status it must become.
STATUS_TABLE = [
    ("accepted", "accepted"),
    ("scheduled", "scheduled"),
    ("queued", "queued"),
    ("sending", "sending"),
    ("sent", "sent"),
    ("partially_delivered", "sent"),
    ("delivered", "delivered"),
    ("undelivered", "undelivered"),
    ("failed", "failed"),
    ("read", "read"),
    ("canceled", "canceled"),
]

# Table-driven parsing: label, body exactly as Twilio sends it, content type, expected events or the
# ParseFailed code. Twilio has no MMS subject parameter, so there is no subject case.
PARSE_CASES = [
    ("inbound sms", _inbound_body(), FORM, [_inbound()]),
    (
        "inbound mms with three media and no text",
        _inbound_body(
            body="",
            media="&NumMedia=3"
            + _media_fields((0, "image/jpeg", MEDIA[0]), (1, "image/png", MEDIA[1]), (2, "application/pdf", MEDIA[2])),
            sid=MMS_SID,
        ),
        FORM,
        [
            _inbound(
                None,
                MMS_SID,
                [
                    MediaRef(MEDIA[0], "image/jpeg"),
                    MediaRef(MEDIA[1], "image/png"),
                    MediaRef(MEDIA[2], "application/pdf"),
                ],
            )
        ],
    ),
    (
        "media fields in numeric order, gaps allowed, type optional",
        _inbound_body(
            media="&NumMedia=2" + f"&MediaUrl10={quote(MEDIA[1], safe='')}" + _media_fields((2, "image/gif", MEDIA[0])),
            sid=MMS_SID,
        ),
        FORM,
        [_inbound(sid=MMS_SID, media=[MediaRef(MEDIA[0], "image/gif"), MediaRef(MEDIA[1])])],
    ),
    ("NumMedia=1000 with no media fields", _inbound_body(media="&NumMedia=1000"), FORM, [_inbound()]),
    (
        "unicode and emoji",
        _inbound_body(body="Caf%C3%A9+%F0%9F%98%80%F0%9F%91%8D%F0%9F%8F%BD+%E4%BD%A0%E5%A5%BD"),
        FORM,
        [_inbound("Caf\u00e9 \U0001f600\U0001f44d\U0001f3fd \u4f60\u597d")],
    ),
    (
        "percent-encoded bytes that are not UTF-8 become replacement characters",
        _inbound_body(body="%FF%FEok"),
        FORM,
        [_inbound("\ufffd\ufffdok")],
    ),
    (
        "unknown extra parameters are ignored",
        _inbound_body(
            extra="&AddOns=%7B%22status%22%3A%22successful%22%7D&MessagingServiceSid=MG123"
            "&ReferralNumMedia=0&SomethingTwilioAddsTomorrow=%5B1%2C2%5D"
        ),
        FORM,
        [_inbound()],
    ),
    (
        "receiving with content is the incoming message",
        _inbound_body().replace(b"=received", b"=receiving"),
        FORM,
        [_inbound()],
    ),
    (
        "only the deprecated SmsSid",
        f"SmsSid={SMS_SID}&SmsStatus=received&Body=hi&From=%2B15550001111&To=%2B15551234567".encode(),
        FORM,
        [_inbound("hi")],
    ),
    *[
        (f"status {status}", _status_body(status), FORM, [_status(status, expected)])
        for status, expected in STATUS_TABLE
    ],
    (
        "failed with error code and message",
        _status_body("failed", "&ErrorCode=30008&ErrorMessage=Unknown+error"),
        FORM,
        [_status("failed", "failed", error_code="30008", error_message="Unknown error")],
    ),
    (
        "undelivered with error code and RawDlrDoneDate",
        _status_body("undelivered", "&ErrorCode=30003&RawDlrDoneDate=2601020304"),
        FORM,
        [_status("undelivered", "undelivered", error_code="30003", occurred_at=datetime(2026, 1, 2, 3, 4, tzinfo=UTC))],
    ),
    (
        "RawDlrDoneDate with seconds",
        _status_body("delivered", "&RawDlrDoneDate=260102030405"),
        FORM,
        [_status("delivered", "delivered", occurred_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC))],
    ),
    (
        "unreadable RawDlrDoneDate is ignored",
        _status_body("delivered", "&RawDlrDoneDate=9913999999"),
        FORM,
        [_status("delivered", "delivered")],
    ),
    ("status word in upper case", _status_body("DELIVERED"), FORM, [_status("DELIVERED", "delivered")]),
    (
        "a status Twilio adds later is unknown, its word kept",
        _status_body("rerouted"),
        FORM,
        [_status("rerouted", "unknown")],
    ),
    ("received report without content adds nothing", _status_body("received"), FORM, []),
    (
        "JSON body with Twilio's parameter names",
        f'{{"MessageSid": "{MMS_SID}", "SmsStatus": "received", "From": "+15550001111", "To": "+15551234567",'
        f' "Body": "json", "NumMedia": 1, "MediaUrl0": "{MEDIA[0]}", "MediaContentType0": "image/jpeg",'
        f' "Extra": {{"nested": [1]}}}}'.encode(),
        "application/json",
        [_inbound("json", MMS_SID, [MediaRef(MEDIA[0], "image/jpeg")])],
    ),
    (
        "JSON MessageSid that is a list",
        b'{"MessageSid": ["SM1"], "SmsStatus": "received", "Body": "x"}',
        "application/json",
        "invalid_payload",
    ),
    (
        "JSON Body that is an object",
        f'{{"MessageSid": "{SMS_SID}", "Body": {{"text": "x"}}}}'.encode(),
        "application/json",
        "invalid_payload",
    ),
    (
        "JSON status that is a boolean",
        f'{{"MessageSid": "{SMS_SID}", "MessageStatus": true}}'.encode(),
        "application/json",
        "invalid_payload",
    ),
    ("truncated JSON", b'{"MessageSid": "SM', "application/json", "invalid_json"),
    ("form body sent as JSON", _inbound_body(), "application/json", "invalid_json"),
    ("JSON that is not an object", b'["MessageSid"]', "application/json", "invalid_json"),
    ("missing MessageSid", b"SmsStatus=received&Body=hi&From=%2B15550001111", FORM, "missing_message_id"),
    ("no status and no content", f"MessageSid={SMS_SID}&AccountSid={ACCOUNT_SID}".encode(), FORM, "missing_status"),
    ("empty body", b"", FORM, "missing_message_id"),
    ("not a form", b"MessageSid", FORM, "invalid_form"),
    ("not UTF-8", b"MessageSid=SM1&Body=\xff", FORM, "invalid_encoding"),
    (
        "From longer than any address",
        _inbound_body().replace(b"From=%2B15550001111", b"From=" + b"1" * 65),
        FORM,
        "invalid_payload",
    ),
    ("MessageSid of 10,000 characters", b"MessageSid=" + b"S" * 10_000 + b"&Body=x", FORM, "invalid_payload"),
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


class TestMediaCredentials:
    def test_twilio_media_get_basic_auth_with_the_account_sid_from_the_url(self):
        credentials = ADAPTER.media_credentials(_connection(), MEDIA[0])
        assert isinstance(credentials, Credentials)
        expected = base64.b64encode(f"{ACCOUNT_SID}:{TWILIO_TOKEN}".encode()).decode()
        assert dict(credentials.headers) == {"Authorization": f"Basic {expected}"}
        assert credentials.hosts == frozenset({"api.twilio.com"})
        assert credentials.applies_to("api.twilio.com")
        assert not credentials.applies_to("media.twiliocdn.com")

    def test_the_first_secret_is_the_auth_token(self):
        credentials = ADAPTER.media_credentials(_connection("current-token", "previous-token"), MEDIA[0])
        decoded = base64.b64decode(credentials.headers["Authorization"].split(" ", 1)[1]).decode()
        assert decoded == f"{ACCOUNT_SID}:current-token"

    @pytest.mark.parametrize(
        "url",
        [
            "https://cdn.example.com/2010-04-01/Accounts/" + ACCOUNT_SID + "/Messages/MM1/Media/ME1",
            "https://api.twilio.com.evil.example/2010-04-01/Accounts/" + ACCOUNT_SID + "/Messages/MM1/Media/ME1",
            "http://api.twilio.com/2010-04-01/Accounts/" + ACCOUNT_SID + "/Messages/MM1/Media/ME1",
            "https://api.twilio.com/2010-04-01/Accounts/AC123/Messages/MM1/Media/ME1",
            "https://api.twilio.com/2010-04-01/Accounts/" + ACCOUNT_SID + "/Calls/CA1",
            "https://api.twilio.com/2010-04-01/Accounts/" + ACCOUNT_SID + "/Messages/MM1/Media/../../x",
            "https://[broken/2010-04-01/",
            "not a url",
        ],
    )
    def test_no_credentials_for_anything_else(self, url):
        assert ADAPTER.media_credentials(_connection(), url) is None

    def test_no_credentials_without_a_token(self):
        connection = Connection(provider="twilio", name="t", basic_auth=["hook:pw"])
        assert ADAPTER.media_credentials(connection, MEDIA[0]) is None

    def test_configured_media_auth_wins_and_defaults_to_twilio_hosts(self):
        auth = MediaAuth(kind="basic", username="SK-api-key", password="api-secret")
        credentials = ADAPTER.media_credentials(_connection(media_auth=auth), MEDIA[0])
        expected = base64.b64encode(b"SK-api-key:api-secret").decode()
        assert dict(credentials.headers) == {"Authorization": f"Basic {expected}"}
        assert credentials.hosts == frozenset({"api.twilio.com"})


# Through the application -------------------------------------------------------------------------


@pytest.fixture
def settings_overrides() -> dict:
    return {
        # Behind a proxy: the service sees http://localhost, Twilio signed the public URL.
        "public_base_url": PUBLIC_BASE,
        # Downloads are only enqueued (no worker runs), so attachments stay pending and nothing is fetched.
        "queue": {"immediate": False},
        "connections": [
            {"provider": "twilio", "name": "main", "tenant": TENANT_A, "secrets": [TWILIO_TOKEN]},
            {
                "provider": "twilio",
                "name": "basic",
                "tenant": TENANT_A,
                "secrets": [TWILIO_TOKEN],
                "basic_auth": ["hook:old-password", "hook:new-password"],
            },
            {
                "provider": "twilio",
                "name": "edge",
                "tenant": TENANT_A,
                "secrets": [TWILIO_TOKEN],
                "public_url": EDGE_URL,
            },
        ],
    }


def _send(client, params, *, signed_url: str, connection: str = "main", query: str = "", headers=None):
    body = form_body(params)
    all_headers = {SIGNATURE: twilio_signature(signed_url, params), **(headers or {})}
    path = f"/webhooks/twilio/{connection}" + (f"?{query}" if query else "")
    return client.post(path, data=body, headers=all_headers, content_type=FORM)


def _public_url(connection: str = "main", query: str = "") -> str:
    return f"{PUBLIC_BASE}/webhooks/twilio/{connection}" + (f"?{query}" if query else "")


def _api_message(client, provider_message_id: str) -> dict:
    response = client.get(f"/api/v1/providers/twilio/messages/{provider_message_id}", headers=AUTH_A)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


class TestTwilioSecurity(WebhookSecuritySuite):
    provider = "twilio"
    signature_headers = (SIGNATURE,)

    def genuine(self, *, body=None, secret=None, url_connection=None, timestamp=None) -> Req:
        # Twilio's scheme has no timestamp: `timestamp` has nothing to change.
        body = body or form_body(inbound_params("SM" + "5ec" * 10 + "ab"))
        url = _public_url(url_connection or self.connection)
        params = parse_qsl(body.decode(), keep_blank_values=True)
        return Req(
            body=body, headers={SIGNATURE: twilio_signature(url, params, secret or TWILIO_TOKEN)}, content_type=FORM
        )


class TestPublicUrl:
    def test_signed_for_the_configured_public_base_url(self, client):
        assert _send(client, inbound_params(), signed_url=_public_url()).status_code == 200

    def test_the_internal_url_is_not_what_twilio_signed(self, client):
        response = _send(client, inbound_params(), signed_url="http://localhost/webhooks/twilio/main")
        assert response.status_code == 401

    def test_signed_with_the_default_port(self, client):
        signed = "https://hooks.example.com:443/webhooks/twilio/main"
        assert _send(client, inbound_params(), signed_url=signed).status_code == 200

    def test_connection_public_url(self, client):
        assert _send(client, inbound_params(), signed_url=EDGE_URL, connection="edge").status_code == 200
        refused = _send(client, inbound_params("SM" + "e" * 32), signed_url=_public_url("edge"), connection="edge")
        assert refused.status_code == 401

    def test_url_with_a_query_string(self, client):
        query = "tenant=a&flag=&note=caf%C3%A9"
        signed = _public_url(query=query)
        assert _send(client, inbound_params(), signed_url=signed, query=query).status_code == 200
        unsigned_query = _send(client, inbound_params("SM" + "f" * 32), signed_url=_public_url(), query=query)
        assert unsigned_query.status_code == 401

    def test_json_body_signed_with_its_hash(self, client):
        body = (
            f'{{"MessageSid": "{MMS_SID}", "SmsStatus": "received", "From": "+15550001111",'
            f' "To": "+15551234567", "Body": "json body", "NumMedia": "0"}}'
        ).encode()
        query = "bodySHA256=" + hashlib.sha256(body).hexdigest()
        headers = {SIGNATURE: twilio_signature(_public_url(query=query))}
        response = client.post(
            f"/webhooks/twilio/main?{query}", data=body, headers=headers, content_type="application/json"
        )
        assert response.status_code == 200
        assert _api_message(client, MMS_SID)["text"] == "json body"
        tampered = client.post(
            f"/webhooks/twilio/main?{query}",
            data=body.replace(b"json", b"JSON"),
            headers=headers,
            content_type="application/json",
        )
        assert tampered.status_code == 401


class TestBehindProxyFix:
    @pytest.fixture
    def settings_overrides(self) -> dict:
        return {
            "proxy": {"x_proto": 1, "x_host": 1},
            "queue": {"immediate": False},
            "connections": [{"provider": "twilio", "name": "main", "tenant": TENANT_A, "secrets": [TWILIO_TOKEN]}],
        }

    def test_forwarded_scheme_and_host_rebuild_the_signed_url(self, client):
        forwarded = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "sms.proxy.example"}
        signed = "https://sms.proxy.example/webhooks/twilio/main"
        assert _send(client, inbound_params(), signed_url=signed, headers=forwarded).status_code == 200
        without_headers = _send(client, inbound_params("SM" + "d" * 32), signed_url=signed)
        assert without_headers.status_code == 401


class TestEndToEnd:
    def test_inbound_mms_is_acknowledged_with_twiml_and_readable(self, client):
        params = inbound_params(
            MMS_SID,
            body="Photos \U0001f4f7",
            sender="+1 (555) 000-1111",
            media=[(MEDIA[0], "image/jpeg"), (MEDIA[1], "image/png")],
        )
        response = _send(client, params, signed_url=_public_url())
        assert response.status_code == 200
        assert response.get_data() == b"<Response/>"
        assert response.mimetype == "text/xml"

        message = _api_message(client, MMS_SID)
        assert client.get(f"/api/v1/messages/{message['id']}", headers=AUTH_A).get_json() == message
        assert message["provider"] == "twilio" and message["connection"] == "main"
        assert message["direction"] == "inbound" and message["status"] == "received"
        assert message["from"] == "+15550001111" and message["to"] == ["+15551234567"]
        assert message["text"] == "Photos \U0001f4f7"
        assert [(a["index"], a["status"], a["declaredContentType"]) for a in message["attachments"]] == [
            (0, "pending", "image/jpeg"),
            (1, "pending", "image/png"),
        ]

    def test_delivered_then_late_sent_keeps_delivered(self, client):
        sid = "SM" + "77" * 16
        for status in ("delivered", "sent"):
            params = status_params(sid, status, raw_dlr_done_date="2601020304" if status == "delivered" else None)
            assert _send(client, params, signed_url=_public_url()).status_code == 200
        message = _api_message(client, sid)
        assert message["status"] == "delivered" and message["direction"] == "outbound"
        assert message["from"] == "+15551234567" and message["to"] == ["+15550001111"]
        assert [(h["status"], h["providerStatus"], h["applied"]) for h in message["statusHistory"]] == [
            ("delivered", "delivered", True),
            ("sent", "sent", False),
        ]
        assert message["statusHistory"][0]["occurredAt"] == "2026-01-02T03:04:00Z"

    def test_undelivered_keeps_the_error_code_and_a_retry_is_a_duplicate(self, client):
        sid = "SM" + "88" * 16
        params = status_params(sid, "undelivered", error_code="30003")
        for _ in range(2):
            response = _send(client, params, signed_url=_public_url())
            assert response.status_code == 200 and response.get_data() == b"<Response/>"
        history = _api_message(client, sid)["statusHistory"]
        assert [(h["status"], h["errorCode"]) for h in history] == [("undelivered", "30003")]
