"""The declarative mapping adapter: options validated at start, paths, the parsing table over JSON,
form and XML (one logical message in all three gives the same events), hostile XML refused, token and
HMAC auth, the security suite, and a configured provider end to end."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from datetime import UTC, datetime
from urllib.parse import urlencode

import pytest
import sqlalchemy as sa
from werkzeug.datastructures import Headers

from tests.fixtures.app import TENANT_A, USER_A, base_test_config
from tests.providers.security_suite import assert_quiet_refusal
from tests.support.mapping import (
    ACME_OPTIONS,
    FLAT_OPTIONS,
    MAPPING_SECRET,
    MAPPING_TOKEN,
    acme_headers,
    acme_signature,
)
from webhook_service.config.model import ConfigError, Connection
from webhook_service.database.tables import Message, QuarantinedRequest, RawRequest
from webhook_service.model.events import MediaRef, MessageEvent, StatusEvent
from webhook_service.providers import ADAPTERS, ParseFailed, VerificationFailed, WebhookRequest
from webhook_service.providers.mapping import compile_path, merge_options
from webhook_service.settings import load_settings

from .security_suite import Req, TimestampSecurityTests, WebhookSecuritySuite, count

ADAPTER = ADAPTERS["mapping"]
AUTH_A = {"Authorization": "Basic " + base64.b64encode(":".join(USER_A).encode()).decode()}
BEARER_OPTIONS = {**FLAT_OPTIONS, "auth": {"kind": "token", "header": "Authorization", "scheme": "Bearer"}}
BASIC_ONLY_OPTIONS = {**FLAT_OPTIONS, "auth": {"kind": "none"}}


@pytest.fixture
def settings_overrides():
    return {
        "connections": [
            {
                "provider": "mapping",
                "name": "main",
                "tenant": TENANT_A,
                "secrets": [MAPPING_SECRET],
                "options": ACME_OPTIONS,
            },
            {
                "provider": "mapping",
                "name": "basic",
                "tenant": TENANT_A,
                "secrets": [MAPPING_SECRET],
                "basic_auth": ["hook:old-password", "hook:new-password"],
                "options": ACME_OPTIONS,
            },
            {
                "provider": "mapping",
                "name": "token",
                "tenant": TENANT_A,
                "secrets": ["old-token", MAPPING_TOKEN],
                "options": FLAT_OPTIONS,
            },
            {
                "provider": "mapping",
                "name": "bearer",
                "tenant": TENANT_A,
                "secrets": [MAPPING_TOKEN],
                "options": BEARER_OPTIONS,
            },
            {
                "provider": "mapping",
                "name": "basic-only",
                "tenant": TENANT_A,
                "basic_auth": ["hook:pw"],
                "options": BASIC_ONLY_OPTIONS,
            },
        ]
    }


def _request(
    body: bytes,
    content_type: str | None = "application/json",
    headers: dict | None = None,
    query: str = "",
    received_at: datetime | None = None,
) -> WebhookRequest:
    all_headers = Headers(headers or {})
    if content_type:
        all_headers["Content-Type"] = content_type
    url = "https://hooks.example.com/webhooks/mapping/t" + (f"?{query}" if query else "")
    return WebhookRequest(
        method="POST", url=url, headers=all_headers, body=body, received_at=received_at or datetime.now(UTC)
    )


def _connection(options: dict, secrets: tuple[str, ...] = (MAPPING_SECRET,), **fields) -> Connection:
    return Connection(provider="mapping", name="t", secrets=list(secrets), options=options, **fields)


ACME = _connection(ACME_OPTIONS)
FLAT = _connection(FLAT_OPTIONS, secrets=(MAPPING_TOKEN,))


# Options validated at start ---------------------------------------------------------------------


def _load(tmp_path, connection: dict):
    config = base_test_config(tmp_path / "data", f"sqlite:///{tmp_path / 'unused.db'}")
    config["connections"] = [
        {
            "provider": "mapping",
            "name": "good",
            "tenant": TENANT_A,
            "secrets": [MAPPING_SECRET],
            "options": ACME_OPTIONS,
        },
        {"provider": "mapping", "name": "bad", "tenant": TENANT_A, **connection},
    ]
    return load_settings(environ={}, overrides=config)


BAD_OPTIONS = [
    ("unknown option", {"options": {"body_fromat": "json"}}, "options.body_fromat: Extra inputs are not permitted"),
    ("unknown body format", {"options": {"body_format": "yaml"}}, "options.body_format: Input should be"),
    (
        "malformed path",
        {"options": {"fields": {"from": "data..sender"}}},
        "options.fields.from: 'data..sender' is not a path",
    ),
    ("unknown field", {"options": {"fields": {"sender": "from"}}}, "options.fields.sender: Extra inputs"),
    ("no message id path", {"options": {"fields": {"message_id": []}}}, "options.fields.message_id: at least one"),
    ("path that is not text", {"options": {"fields": {"text": 5}}}, "options.fields.text"),
    (
        "status map to a non-canonical status",
        {"options": {"status_map": {"OK": "done"}}},
        "options.status_map: 'OK' maps to 'done', which is not a canonical status",
    ),
    (
        "event kind paths without values",
        {"options": {"event_kind": {"paths": ["event"]}}},
        "options.event_kind: paths are set but no inbound",
    ),
    ("unknown auth kind", {"options": {"auth": {"kind": "oauth"}}}, "options.auth: Input tag 'oauth'"),
    (
        "unknown HMAC algorithm",
        {"options": {"auth": {"kind": "hmac", "header": "X-Sig", "algorithm": "md5"}}},
        "options.auth.hmac.algorithm: Input should be 'sha1', 'sha256' or 'sha512'",
    ),
    (
        "timestamped HMAC without a timestamp header",
        {"options": {"auth": {"kind": "hmac", "header": "X-Sig", "signed_content": "timestamp.body"}}},
        "options.auth.hmac: signed_content 'timestamp.body' needs timestamp_header",
    ),
    (
        "token in two places",
        {"options": {"auth": {"kind": "token", "header": "Authorization", "query_parameter": "token"}}},
        "options.auth.token: set exactly one of query_parameter and header",
    ),
    (
        "token in the Authorization header beside Basic auth",
        {"basic_auth": ["hook:pw"], "options": {"auth": {"kind": "token", "header": "Authorization"}}},
        "options.auth.header: Authorization already carries the connection's basic_auth",
    ),
    (
        "secrets with no auth to check them",
        {"options": {"auth": {"kind": "none"}}},
        "options.auth.kind: 'none' checks no secret",
    ),
    (
        "acknowledgement content type",
        {"options": {"acknowledgement": {"content_type": "text plain"}}},
        "options.acknowledgement.content_type",
    ),
]


@pytest.mark.parametrize("label, connection, message", BAD_OPTIONS, ids=[case[0] for case in BAD_OPTIONS])
def test_bad_options_stop_the_service_with_a_message_naming_them(tmp_path, label, connection, message):
    with pytest.raises(ConfigError) as error:
        _load(tmp_path, {"secrets": [MAPPING_SECRET], **connection})
    assert str(error.value).startswith("connections[1] (mapping/bad): " + message), str(error.value)


def test_good_options_load(tmp_path):
    settings = _load(tmp_path, {"basic_auth": ["hook:pw"], "options": BASIC_ONLY_OPTIONS})
    assert [c.key for c in settings.connections] == ["mapping/good", "mapping/bad"]


def test_a_connection_without_options_takes_the_generic_defaults():
    connection = Connection(provider="mapping", verify=False)
    assert ADAPTER.validate_options(connection) is None
    request = _request(
        b'{"id":"g-1","from":"+15559876543","to":["+15551234567"],"text":"hi",'
        b'"media":[{"url":"https://m.example/a.jpg","contentType":"image/jpeg"}]}'
    )
    assert ADAPTER.parse(request, connection) == [
        MessageEvent(
            "g-1",
            "inbound",
            "+15559876543",
            ("+15551234567",),
            text="hi",
            media=(MediaRef("https://m.example/a.jpg", "image/jpeg"),),
        )
    ]


def test_a_token_in_any_parameter_or_header_is_redacted_when_stored():
    from webhook_service.intake.redaction import redact_url

    in_query = _connection({**ACME_OPTIONS, "auth": {"kind": "token", "query_parameter": "Key"}})
    assert "key" in ADAPTER.secret_query_params_for(in_query)
    assert (
        redact_url("https://h.example/w?key=s3cret&x=1", ADAPTER.secret_query_params_for(in_query))
        == "https://h.example/w?key=%5Bredacted%5D&x=1"
    )
    in_header = _connection({**ACME_OPTIONS, "auth": {"kind": "token", "header": "X-Token"}})
    assert "x-token" in ADAPTER.secret_headers_for(in_header)
    assert "authorization" in ADAPTER.secret_headers_for(in_header)


def test_the_acknowledgement_is_configurable_per_connection():
    connection = _connection({**ACME_OPTIONS, "acknowledgement": {"body": "<Response/>", "content_type": "text/xml"}})
    assert ADAPTER.acknowledgement_for(connection) == ("<Response/>", "text/xml")
    assert ADAPTER.acknowledgement_for(ACME) == ("OK", "text/plain") == ADAPTER.acknowledgement


def test_merge_options_merges_field_tables_and_replaces_the_rest():
    preset = {
        "fields": {"text": ["Message"], "extra": {"a": ["A"]}},
        "status_map": {"x": "sent"},
        "auth": {"kind": "token", "query_parameter": "access_token"},
    }
    own = {
        "fields": {"from": "Sender", "extra": {"b": "B"}},
        "status_map": {"y": "failed"},
        "auth": {"kind": "hmac", "header": "X-Sig"},
    }
    assert merge_options(preset, own) == {
        "fields": {"text": ["Message"], "from": "Sender", "extra": {"a": ["A"], "b": "B"}},
        "status_map": {"x": "sent", "y": "failed"},
        "auth": {"kind": "hmac", "header": "X-Sig"},
    }


# Paths ------------------------------------------------------------------------------------------

DOCUMENT = json.dumps(
    {
        "data": {
            "id": 7,
            "to": ["a", "b"],
            "media": [{"url": "u1", "type": "t1"}, {"url": "u2"}],
            "single": {"url": "u3"},
        }
    }
).encode()
PATHS = [
    ("data.id", ("7",)),
    ("data.to", ("a", "b")),
    ("data.to[]", ("a", "b")),
    ("data.to[1]", ("b",)),
    ("data.to[5]", ()),
    ("data.media[].url", ("u1", "u2")),
    ("data.media[].type", ("t1",)),
    ("data.single[].url", ("u3",)),
    ("data.missing.url", ()),
    ("data.id.deeper", ()),
    ("header:X-Kind", ("k",)),
    ("query:kind", ("q",)),
]


@pytest.mark.parametrize("path, expected", PATHS, ids=[case[0] for case in PATHS])
def test_paths(path, expected):
    connection = _connection(
        {"fields": {"message_id": "data.id", "to": path}, "auth": {"kind": "hmac", "header": "X-S"}}
    )
    [event] = ADAPTER.parse(_request(DOCUMENT, headers={"X-Kind": "k"}, query="kind=q"), connection)
    assert event.to == expected


@pytest.mark.parametrize("path", ["", "a..b", ".a", "a[", "a[x]", "a[]]", "header:", "query: "])
def test_malformed_paths_are_refused(path):
    with pytest.raises(ValueError):
        compile_path(path)


# The parsing table ---------------------------------------------------------------------------------

AT = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
MEDIA = (
    MediaRef("https://media.acme.example/1.jpg", "image/jpeg", "1.jpg", 2048),
    MediaRef("https://media.acme.example/2.pdf", "application/pdf"),
)
INBOUND = MessageEvent(
    "acme-1",
    "inbound",
    "+15559876543",
    ("+15551234567",),
    text="Hello",
    media=MEDIA,
    occurred_at=AT,
    extra={"segments": "1"},
)
INBOUND_JSON = json.dumps(
    {
        "event": "message.in",
        "event_id": "ev-1",
        "data": {
            "id": "acme-1",
            "sender": "+15559876543",
            "recipients": ["+15551234567"],
            "text": "Hello",
            "segments": 1,
            "at": "2026-01-02T03:04:05Z",
            "unmapped": {"whatever": [1, 2]},
            "media": [
                {"url": "https://media.acme.example/1.jpg", "type": "image/jpeg", "filename": "1.jpg", "bytes": 2048},
                {"url": "https://media.acme.example/2.pdf", "type": "application/pdf"},
            ],
        },
    }
).encode()
INBOUND_XML = b"""<?xml version="1.0" encoding="UTF-8"?>
<webhook>
  <event>message.in</event>
  <event_id>ev-1</event_id>
  <data>
    <id>acme-1</id>
    <sender>+15559876543</sender>
    <recipients>+15551234567</recipients>
    <text>Hello</text>
    <segments>1</segments>
    <at>2026-01-02T03:04:05Z</at>
    <unmapped><whatever>1</whatever></unmapped>
    <media><url>https://media.acme.example/1.jpg</url><type>image/jpeg</type><filename>1.jpg</filename><bytes>2048</bytes></media>
    <media><url>https://media.acme.example/2.pdf</url><type>application/pdf</type></media>
  </data>
</webhook>"""


def _dlr(state: str, **data) -> bytes:
    return json.dumps(
        {"event": "message.dlr", "event_id": f"ev-{state}", "data": {"id": "out-1", "state": state, **data}}
    ).encode()


def _report(status: str, provider_status: str, **kwargs) -> StatusEvent:
    return StatusEvent("out-1", status, provider_status, event_id=f"ev-{provider_status}", **kwargs)


DEEP_XML = b"<a>" * 40 + b"x" + b"</a>" * 40
JSON, XML, FORM = "application/json", "application/xml", "application/x-www-form-urlencoded"

# Label, Content-Type, body byte for byte, expected events or the ParseFailed code.
PARSE_CASES = [
    ("inbound MMS as JSON", JSON, INBOUND_JSON, [INBOUND]),
    ("inbound MMS as XML", XML, INBOUND_XML, [INBOUND]),
    ("inbound MMS as XML with text/xml; charset", "text/xml; charset=utf-8", INBOUND_XML, [INBOUND]),
    ("inbound MMS with no Content-Type (sniffed)", None, INBOUND_XML, [INBOUND]),
    (
        "XML with namespaces and attributes",
        XML,
        b'<w:webhook xmlns:w="urn:acme"><w:event>message.in</w:event><w:data><w:id kind="uuid">acme-ns</w:id>'
        b'<w:text xml:lang="en">Hi &amp; bye</w:text><w:recipients>+15551234567</w:recipients>'
        b"<w:recipients>+15557654321</w:recipients></w:data></w:webhook>",
        [MessageEvent("acme-ns", "inbound", None, ("+15551234567", "+15557654321"), text="Hi & bye")],
    ),
    (
        "XML in Latin-1",
        XML,
        '<?xml version="1.0" encoding="ISO-8859-1"?><webhook><event>message.in</event><data><id>acme-l1</id>'
        "<text>Caf\u00e9</text></data></webhook>".encode("latin-1"),
        [MessageEvent("acme-l1", "inbound", None, (), text="Caf\u00e9")],
    ),
    (
        "subject, Unicode and emoji",
        JSON,
        json.dumps(
            {
                "event": "message.in",
                "data": {
                    "id": "acme-u",
                    "subject": "\u2603 Winter",
                    "text": "Caf\u00e9 \U0001f600\U0001f44d\U0001f3fd \u4f60\u597d",
                },
            },
            ensure_ascii=False,
        ).encode(),
        [
            MessageEvent(
                "acme-u",
                "inbound",
                None,
                (),
                subject="\u2603 Winter",
                text="Caf\u00e9 \U0001f600\U0001f44d\U0001f3fd \u4f60\u597d",
            )
        ],
    ),
    (
        "emoji as XML character references",
        XML,
        b"<webhook><event>message.in</event><data><id>acme-x</id><text>&#128512;&#x4f60;</text></data></webhook>",
        [MessageEvent("acme-x", "inbound", None, (), text="\U0001f600\u4f60")],
    ),
    (
        "event kind from a header",
        JSON,
        b'{"data":{"id":"acme-h","text":"hi"}}',
        [MessageEvent("acme-h", "inbound", None, (), text="hi", extra={"channel": "sms"})],
    ),
    *[
        (f"status {word}", JSON, _dlr(word), [_report(status, word)])
        for word, status in (
            ("DELIVERED_TO_HANDSET", "delivered"),
            ("carrier_rejected", "undelivered"),
            ("DELIVRD", "delivered"),
            ("UNDELIV", "undelivered"),
            ("queued", "queued"),
            ("sent", "sent"),
            ("failed", "failed"),
            ("expired", "expired"),
            ("cancelled", "canceled"),
            ("read", "read"),
            ("beamed_up", "unknown"),
        )
    ],
    (
        "status with an error, a time and the addresses",
        JSON,
        _dlr(
            "failed",
            error={"code": 4001, "detail": "Unknown subscriber"},
            at="2026-01-02T03:04:05Z",
            origin="+15551234567",
            recipients=["+15559876543"],
        ),
        [
            _report(
                "failed",
                "failed",
                error_code="4001",
                error_message="Unknown subscriber",
                occurred_at=AT,
                from_="+15551234567",
                to=("+15559876543",),
            )
        ],
    ),
    (
        "status as XML",
        XML,
        b"<webhook><event>message.dlr</event><event_id>ev-DELIVRD</event_id><data><id>out-1</id><state>DELIVRD</state>"
        b"<error><code>0</code></error></data></webhook>",
        [_report("delivered", "DELIVRD", error_code="0")],
    ),
    (
        "status without an event (the shape decides)",
        JSON,
        b'{"data":{"id":"out-1","state":"sent"}}',
        [StatusEvent("out-1", "sent", "sent")],
    ),
    (
        "outbound message with its status",
        JSON,
        b'{"event":"message.out","data":{"id":"out-1","origin":"+15551234567","recipients":["+15559876543"],'
        b'"text":"Your code is 1234","state":"sent"}}',
        [
            MessageEvent("out-1", "outbound", "+15551234567", ("+15559876543",), text="Your code is 1234"),
            StatusEvent("out-1", "sent", "sent", from_="+15551234567", to=("+15559876543",)),
        ],
    ),
    ("an event kind not mapped produces no event", JSON, b'{"event":"account.updated","data":{"id":"z"}}', []),
    ("status report without a status", JSON, b'{"event":"message.dlr","data":{"id":"out-1"}}', "missing_field"),
    ("missing message id", JSON, b'{"event":"message.in","data":{"text":"hi"}}', "missing_field"),
    (
        "sender is an object",
        JSON,
        b'{"event":"message.in","data":{"id":"m","sender":{"n":"+1555"}}}',
        "invalid_payload",
    ),
    (
        "two values for a single field",
        XML,
        b"<webhook><event>message.in</event><data><id>m</id><text>a</text><text>b</text></data></webhook>",
        "invalid_payload",
    ),
    (
        "huge message id",
        JSON,
        json.dumps({"event": "message.in", "data": {"id": "x" * 300}}).encode(),
        "invalid_payload",
    ),
    (
        "21 media",
        JSON,
        json.dumps(
            {
                "event": "message.in",
                "data": {"id": "m", "media": [{"url": f"https://m.example/{i}"} for i in range(21)]},
            }
        ).encode(),
        "invalid_payload",
    ),
    (
        "absurd declared size is dropped",
        JSON,
        b'{"event":"message.in","data":{"id":"m","media":[{"url":"https://m.example/a","bytes":"9999999999999999"}]}}',
        [MessageEvent("m", "inbound", None, (), media=(MediaRef("https://m.example/a"),))],
    ),
    ("NUL character", JSON, b'{"event":"message.in","data":{"id":"m","text":"a\\u0000"}}', "invalid_payload"),
    ("unpaired surrogate", JSON, b'{"event":"message.in","data":{"id":"m","text":"\\udc00"}}', "invalid_payload"),
    ("truncated JSON", JSON, INBOUND_JSON[:50], "invalid_json"),
    ("truncated XML", XML, INBOUND_XML[:80], "invalid_xml"),
    ("form body sent as JSON", JSON, b"event=message.in&id=m", "invalid_json"),
    ("JSON that is not an object", JSON, b'["message.in"]', "invalid_json"),
    ("empty body", JSON, b"", "empty_body"),
    ("blank body", XML, b"  \r\n", "empty_body"),
    ("not UTF-8", JSON, b'{"event":"message.in","data":{"id":"\xff"}}', "invalid_encoding"),
    ("JSON nested too deeply", JSON, b"[" * 100_000 + b"]" * 100_000, "invalid_json"),
    ("XML nested too deeply", XML, DEEP_XML, "invalid_xml"),
    ("XML with a DTD", XML, b'<!DOCTYPE webhook SYSTEM "http://evil.example/x.dtd"><webhook/>', "xml_forbidden"),
]


@pytest.mark.parametrize("label, content_type, body, expected", PARSE_CASES, ids=[case[0] for case in PARSE_CASES])
def test_parse(label, content_type, body, expected):
    request = _request(
        body,
        content_type,
        headers={"X-Acme-Event": "message.in", "X-Acme-Channel": "sms"}
        if label == "event kind from a header"
        else None,
    )
    if isinstance(expected, str):
        with pytest.raises(ParseFailed) as failure:
            ADAPTER.parse(request, ACME)
        assert failure.value.code == expected
    else:
        assert ADAPTER.parse(request, ACME) == expected


# One logical message, three body formats -------------------------------------------------------------

FLAT_TEXT = "Same message, caf\u00e9 \U0001f600 & <tags>"
FLAT_PAIRS = [
    ("msg_id", "flat-1"),
    ("from", "+15559876543"),
    ("to", "+15551234567"),
    ("to", "+15557654321"),
    ("text", FLAT_TEXT),
    ("media_url", "https://m.example/a.jpg"),
    ("media_type", "image/jpeg"),
    ("media_url", "https://m.example/b.png"),
    ("media_type", "image/png"),
]
FLAT_FORMS = [
    (
        "json",
        JSON,
        json.dumps(
            {
                "msg_id": "flat-1",
                "from": "+15559876543",
                "to": ["+15551234567", "+15557654321"],
                "text": FLAT_TEXT,
                "media_url": ["https://m.example/a.jpg", "https://m.example/b.png"],
                "media_type": ["image/jpeg", "image/png"],
            }
        ).encode(),
    ),
    ("form", FORM, urlencode(FLAT_PAIRS).encode()),
    (
        "xml",
        XML,
        (
            "<message><msg_id>flat-1</msg_id><from>+15559876543</from><to>+15551234567</to>"
            "<to>+15557654321</to><text>Same message, caf\u00e9 \U0001f600 &amp; &lt;tags&gt;</text>"
            "<media_url>https://m.example/a.jpg</media_url><media_type>image/jpeg</media_type>"
            "<media_url>https://m.example/b.png</media_url><media_type>image/png</media_type></message>"
        ).encode(),
    ),
]
FLAT_EVENTS = [
    MessageEvent(
        "flat-1",
        "inbound",
        "+15559876543",
        ("+15551234567", "+15557654321"),
        text=FLAT_TEXT,
        media=(MediaRef("https://m.example/a.jpg", "image/jpeg"), MediaRef("https://m.example/b.png", "image/png")),
    )
]
FLAT_STATUS_FORMS = [
    ("json", JSON, b'{"msg_id":"flat-1","status":"delivered","err":"0"}'),
    ("form", FORM, b"msg_id=flat-1&status=delivered&err=0"),
    ("xml", XML, b"<dlr><msg_id>flat-1</msg_id><status>delivered</status><err>0</err></dlr>"),
]


@pytest.mark.parametrize("declared", ["by Content-Type", "sniffed", "configured"])
@pytest.mark.parametrize("body_format, content_type, body", FLAT_FORMS, ids=[f[0] for f in FLAT_FORMS])
def test_one_message_in_json_form_and_xml_gives_the_same_events(body_format, content_type, body, declared):
    connection = FLAT
    if declared == "configured":
        connection = _connection({**FLAT_OPTIONS, "body_format": body_format}, secrets=(MAPPING_TOKEN,))
    request = _request(
        body,
        content_type
        if declared == "by Content-Type"
        else "application/octet-stream"
        if declared == "configured"
        else None,
    )
    assert ADAPTER.parse(request, connection) == FLAT_EVENTS


@pytest.mark.parametrize("body_format, content_type, body", FLAT_STATUS_FORMS, ids=[f[0] for f in FLAT_STATUS_FORMS])
def test_one_status_report_in_json_form_and_xml_gives_the_same_events(body_format, content_type, body):
    assert ADAPTER.parse(_request(body, content_type), FLAT) == [
        StatusEvent("flat-1", "delivered", "delivered", error_code="0")
    ]


def test_a_repeated_form_field_for_a_single_value_is_refused():
    with pytest.raises(ParseFailed) as failure:
        ADAPTER.parse(_request(b"msg_id=a&msg_id=b", FORM), FLAT)
    assert failure.value.code == "invalid_payload"


# Hostile XML, through the client -------------------------------------------------------------------

XXE = b"""<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE message [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<message><msg_id>xxe-1</msg_id><text>&xxe;</text></message>"""
BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE message [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<message><msg_id>lol-1</msg_id><text>&lol9;</text></message>"""
PARAMETER_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE message [<!ENTITY % remote SYSTEM "http://evil.example/x.dtd"> %remote;]>
<message><msg_id>pe-1</msg_id></message>"""


@pytest.mark.parametrize(
    "body", [XXE, BILLION_LAUGHS, PARAMETER_ENTITY], ids=["xxe", "billion-laughs", "parameter-entity"]
)
def test_hostile_xml_is_refused_and_quarantined_never_expanded(client, runtime, body):
    started = time.perf_counter()
    response = client.post(f"/webhooks/mapping/token?token={MAPPING_TOKEN}", data=body, content_type="text/xml")
    assert time.perf_counter() - started < 2
    assert response.status_code == 400
    assert b"root:" not in response.get_data() and b"lol" not in response.get_data()
    with runtime.db.reading() as session:
        [quarantined] = session.scalars(sa.select(QuarantinedRequest)).all()
    assert quarantined.http_status == 400 and quarantined.reason_code == "xml_forbidden"
    assert quarantined.body == body
    assert count(runtime, Message) == 0 and count(runtime, RawRequest) == 0


# Verification ---------------------------------------------------------------------------------------


class TestHmacVariants:
    BODY = b'{"msg_id":"h-1","text":"hi"}'

    @pytest.mark.parametrize("algorithm", ["sha1", "sha256", "sha512"])
    @pytest.mark.parametrize("encoding", ["hex", "base64"])
    def test_algorithms_and_encodings_over_the_raw_body(self, algorithm, encoding):
        digest = hmac.new(b"k2", self.BODY, getattr(hashlib, algorithm)).digest()
        signature = digest.hex().upper() if encoding == "hex" else base64.b64encode(digest).decode()
        connection = _connection(
            {
                **FLAT_OPTIONS,
                "auth": {
                    "kind": "hmac",
                    "header": "X-Sig",
                    "algorithm": algorithm,
                    "encoding": encoding,
                    "prefix": "sha=",
                },
            },
            secrets=("k1", "k2"),
        )
        ADAPTER.verify(_request(self.BODY, headers={"X-Sig": "sha=" + signature}), connection)
        ADAPTER.verify(_request(self.BODY, headers={"X-Sig": signature}), connection)
        with pytest.raises(VerificationFailed) as failure:
            ADAPTER.verify(_request(self.BODY + b" ", headers={"X-Sig": signature}), connection)
        assert failure.value.code == "invalid_signature"

    def test_the_timestamp_is_signed(self):
        now = int(time.time())
        headers = {"X-Acme-Timestamp": str(now + 1), "X-Acme-Signature": acme_signature(self.BODY, now)}
        with pytest.raises(VerificationFailed) as failure:
            ADAPTER.verify(_request(self.BODY, headers=headers), ACME)
        assert failure.value.code == "invalid_signature"

    @pytest.mark.parametrize("signature", ["v1=zz", "v1=abc", "\u00e9", "v1=" + "a" * 2000])
    def test_malformed_hex(self, signature):
        headers = {"X-Acme-Timestamp": str(int(time.time())), "X-Acme-Signature": signature}
        with pytest.raises(VerificationFailed):
            ADAPTER.verify(_request(self.BODY, headers=headers), ACME)


class TestMappingSecurity(WebhookSecuritySuite, TimestampSecurityTests):
    provider = "mapping"
    signature_headers = ("X-Acme-Signature", "X-Acme-Timestamp")
    tolerance = 300

    def genuine(self, *, body=None, secret=None, url_connection=None, timestamp=None) -> Req:
        body = body or INBOUND_JSON
        return Req(body=body, headers=acme_headers(body, secret=secret or MAPPING_SECRET, timestamp=timestamp))


class TestSharedToken:
    BODY = b'{"msg_id":"t-1","from":"+15559876543","text":"hi"}'

    def _post(self, client, query: str = "", headers: dict | None = None, connection: str = "token"):
        return client.post(
            f"/webhooks/mapping/{connection}" + (f"?{query}" if query else ""),
            data=self.BODY,
            headers=headers or {},
            content_type="application/json",
        )

    def test_the_token_in_the_query_is_accepted_and_never_stored(self, client, runtime):
        for token in ("old-token", MAPPING_TOKEN):
            response = self._post(client, urlencode({"token": token, "other": "kept"}))
            assert response.status_code == 200 and response.get_data(as_text=True) == "OK"
        with runtime.db.reading() as session:
            [raw] = session.scalars(sa.select(RawRequest)).all()
        assert MAPPING_TOKEN not in raw.url and "old-token" not in raw.url and "other=kept" in raw.url

    @pytest.mark.parametrize(
        "query",
        ["", "token=", "token=wrong", "Token=" + MAPPING_TOKEN, "token=" + "A" * 5000, "token=%FF%FE", "token=%00"],
    )
    def test_wrong_or_missing_tokens_are_401(self, client, runtime, query):
        assert_quiet_refusal(self._post(client, query))
        assert count(runtime, Message) == 0 and count(runtime, QuarantinedRequest) == 1

    def test_a_bearer_token_in_the_authorization_header(self, client, runtime):
        assert (
            self._post(client, headers={"Authorization": f"Bearer {MAPPING_TOKEN}"}, connection="bearer").status_code
            == 200
        )
        for authorization in (f"Basic {MAPPING_TOKEN}", MAPPING_TOKEN, "Bearer wrong", "Bearer"):
            assert self._post(client, headers={"Authorization": authorization}, connection="bearer").status_code == 401
        with runtime.db.reading() as session:
            stored = [str(row.headers) for row in session.scalars(sa.select(QuarantinedRequest))]
        assert stored and all(MAPPING_TOKEN not in headers for headers in stored)

    def test_basic_auth_alone(self, client):
        good = "Basic " + base64.b64encode(b"hook:pw").decode()
        assert self._post(client, headers={"Authorization": good}, connection="basic-only").status_code == 200
        assert self._post(client, connection="basic-only").status_code == 401


# End to end -------------------------------------------------------------------------------------------


def _post_acme(client, body: bytes, content_type: str = JSON):
    return client.post("/webhooks/mapping/main", data=body, headers=acme_headers(body), content_type=content_type)


class TestEndToEnd:
    def test_an_inbound_mms_is_acknowledged_and_readable(self, client):
        response = _post_acme(client, INBOUND_XML, XML)
        assert response.status_code == 200
        assert response.get_data(as_text=True) == "OK" and response.mimetype == "text/plain"
        message = client.get("/api/v1/providers/mapping/messages/acme-1", headers=AUTH_A).get_json()
        assert message["direction"] == "inbound" and message["status"] == "received"
        assert message["from"] == "+15559876543" and message["to"] == ["+15551234567"]
        assert message["text"] == "Hello"
        assert [(a["declaredContentType"], a["name"], a["status"]) for a in message["attachments"]] == [
            ("image/jpeg", "1.jpg", "pending"),
            ("application/pdf", "2.pdf", "pending"),  # unnamed: the URL's last segment
        ]
        assert client.get(f"/api/v1/messages/{message['id']}", headers=AUTH_A).get_json()["text"] == "Hello"

    def test_delivered_then_a_late_sent_keeps_delivered(self, client):
        outbound = (
            b'{"event":"message.out","data":{"id":"out-1","origin":"15551234567",'
            b'"recipients":["(555) 987-6543"],"text":"Your code is 1234","state":"queued"}}'
        )
        assert _post_acme(client, outbound).status_code == 200
        assert _post_acme(client, _dlr("DELIVERED_TO_HANDSET", at="2026-01-02T03:04:09Z")).status_code == 200
        assert _post_acme(client, _dlr("sent", at="2026-01-02T03:04:05Z")).status_code == 200
        assert _post_acme(client, _dlr("sent", at="2026-01-02T03:04:05Z")).status_code == 200  # a retry
        message = client.get("/api/v1/providers/mapping/messages/out-1", headers=AUTH_A).get_json()
        assert message["direction"] == "outbound" and message["status"] == "delivered"
        assert message["from"] == "+15551234567" and message["to"] == ["+15559876543"]
        assert [(h["status"], h["providerStatus"]) for h in message["statusHistory"]] == [
            ("queued", "queued"),
            ("delivered", "DELIVERED_TO_HANDSET"),
            ("sent", "sent"),
        ]
