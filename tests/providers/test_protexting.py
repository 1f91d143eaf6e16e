"""ProTexting: the mapping adapter's preset. The parsing table over JSON, form and XML in ProTexting's
PascalCase vocabulary, the shared access_token (or Basic auth), overrides of the preset, hostile XML,
and delivery reports end to end."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from urllib.parse import urlencode

import pytest
import sqlalchemy as sa
from werkzeug.datastructures import Headers

from tests.fixtures.app import TENANT_A, USER_A, base_test_config
from webhook_service.config.model import ConfigError, Connection
from webhook_service.database.tables import Message, QuarantinedRequest, RawRequest
from webhook_service.model.events import MediaRef, MessageEvent, StatusEvent
from webhook_service.providers import ADAPTERS, ParseFailed, WebhookRequest
from webhook_service.providers.protexting import STATUS_MAP
from webhook_service.settings import load_settings

from .security_suite import Req, WebhookSecuritySuite, count

ADAPTER = ADAPTERS["protexting"]
PT_TOKEN = "pt-access-token"
AUTH_A = {"Authorization": "Basic " + base64.b64encode(":".join(USER_A).encode()).decode()}
CUSTOM_OPTIONS = {"fields": {"text": ["Body", "Message"]}, "status_map": {"dlvrd_ok": "delivered"}}


@pytest.fixture
def settings_overrides():
    return {
        "connections": [
            {"provider": "protexting", "name": "main", "tenant": TENANT_A, "secrets": [PT_TOKEN]},
            {
                "provider": "protexting",
                "name": "basic",
                "tenant": TENANT_A,
                "secrets": [PT_TOKEN],
                "basic_auth": ["hook:old-password", "hook:new-password"],
            },
            {"provider": "protexting", "name": "basic-only", "tenant": TENANT_A, "basic_auth": ["hook:pw"]},
            {
                "provider": "protexting",
                "name": "custom",
                "tenant": TENANT_A,
                "secrets": [PT_TOKEN],
                "options": CUSTOM_OPTIONS,
            },
        ]
    }


def _request(body: bytes, content_type: str | None) -> WebhookRequest:
    headers = Headers({"Content-Type": content_type} if content_type else {})
    return WebhookRequest(
        method="POST",
        url=f"https://hooks.example.com/webhooks/protexting?access_token={PT_TOKEN}",
        headers=headers,
        body=body,
        received_at=datetime.now(UTC),
    )


MAIN = Connection(provider="protexting", name="t", secrets=[PT_TOKEN])
JSON, XML, FORM = "application/json", "application/xml", "application/x-www-form-urlencoded"
AT = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)

SMS = MessageEvent("pt-1", "inbound", "16461234567", ("12345",), text="Hi")
MMS = MessageEvent(
    "pt-2",
    "inbound",
    "16461234567",
    ("12345",),
    text="Look \U0001f600",
    subject="Photos",
    media=(MediaRef("https://pt.example/r/1.jpg", "image/jpeg"), MediaRef("https://pt.example/r/2.gif", "image/gif")),
    extra={"mmsTemplateId": "77"},
)
MMS_PAIRS = [
    ("Id", "pt-2"),
    ("MobilePhone", "16461234567"),
    ("SendFrom", "12345"),
    ("Subject", "Photos"),
    ("Message", "Look \U0001f600"),
    ("MmsTemplateId", "77"),
    ("ResourceLink", "https://pt.example/r/1.jpg"),
    ("MediaContentType", "image/jpeg"),
    ("ResourceLink", "https://pt.example/r/2.gif"),
    ("MediaContentType", "image/gif"),
]


def _dlr(provider_status: str, **kwargs) -> StatusEvent:
    return StatusEvent("pt-out-1", kwargs.pop("status"), provider_status, from_="12345", to=("16461234567",), **kwargs)


def _dlr_body(status: str, **fields) -> bytes:
    return json.dumps(
        {"Id": "pt-out-1", "MobilePhone": "16461234567", "SendFrom": "12345", "Status": status, **fields}
    ).encode()


# Seed 004's XML answer verbatim: its bare "&id=" makes it malformed XML.
SEED_004_XML = b"""<response>
    <Id>8cccf554cd42bf1b22bcc2d9b4e4571a4a87c9d0</Id>
    <DeliveryReportUrl>https://api2.protexting.com/v1/sms/delivery-report?access_token=your_access_token&id=8cccf554cd42bf1b22bcc2d9b4e4571a4a87c9d0</DeliveryReportUrl>
<Message>Text message to 1646xxxxxxx has been sent.</Message> </response>"""

# Label, Content-Type, body byte for byte, expected events or the ParseFailed code.
PARSE_CASES = [
    (
        "inbound SMS as JSON",
        JSON,
        b'{"Id":"pt-1","MobilePhone":"16461234567","SendFrom":"12345","Message":"Hi"}',
        [SMS],
    ),
    ("inbound SMS as form", FORM, b"Id=pt-1&MobilePhone=16461234567&SendFrom=12345&Message=Hi", [SMS]),
    (
        "inbound SMS as XML",
        XML,
        b"<response><Id>pt-1</Id><MobilePhone>16461234567</MobilePhone><SendFrom>12345</SendFrom>"
        b"<Message>Hi</Message></response>",
        [SMS],
    ),
    ("inbound SMS with no Content-Type", None, b"Id=pt-1&MobilePhone=16461234567&SendFrom=12345&Message=Hi", [SMS]),
    (
        "MessageId and ShortCode aliases",
        JSON,
        b'{"MessageId":"pt-1","MobilePhone":"16461234567","ShortCode":"12345","Message":"Hi"}',
        [SMS],
    ),
    (
        "inbound MMS as JSON",
        JSON,
        json.dumps(
            {
                "Id": "pt-2",
                "MobilePhone": "16461234567",
                "SendFrom": "12345",
                "Subject": "Photos",
                "Message": "Look \U0001f600",
                "MmsTemplateId": 77,
                "ResourceLink": ["https://pt.example/r/1.jpg", "https://pt.example/r/2.gif"],
                "MediaContentType": ["image/jpeg", "image/gif"],
            }
        ).encode(),
        [MMS],
    ),
    ("inbound MMS as form", FORM, urlencode(MMS_PAIRS).encode(), [MMS]),
    (
        "inbound MMS as XML",
        XML,
        ("<response>" + "".join(f"<{name}>{value}</{name}>" for name, value in MMS_PAIRS) + "</response>").encode(),
        [MMS],
    ),
    (
        "MediaUrl and MmsUrl",
        JSON,
        b'{"Id":"pt-3","MobilePhone":"16461234567","MediaUrl":"https://pt.example/a.png","MmsUrl":"https://x/b"}',
        [MessageEvent("pt-3", "inbound", "16461234567", (), media=(MediaRef("https://pt.example/a.png"),))],
    ),
    (
        "an empty ResourceLink (as the send API example has) lets MediaUrl speak",
        JSON,
        b'{"Id":"pt-4","MobilePhone":"16461234567","Message":"Test Message","ResourceLink":"",'
        b'"MediaUrl":"https://pt.example/a.png"}',
        [
            MessageEvent(
                "pt-4", "inbound", "16461234567", (), text="Test Message", media=(MediaRef("https://pt.example/a.png"),)
            )
        ],
    ),
    (
        "empty fields are absent",
        FORM,
        b"Id=pt-5&MobilePhone=16461234567&SendFrom=&Message=&ResourceLink=",
        [MessageEvent("pt-5", "inbound", "16461234567", ())],
    ),
    (
        "unknown extra fields are ignored",
        JSON,
        b'{"Id":"pt-1","MobilePhone":"16461234567","SendFrom":"12345","Message":"Hi","MmsHighResolution":1,'
        b'"MmsResend":0,"DeliveryReportUrl":"https://api2.protexting.com/v1/sms/delivery-report?id=1","Carrier":{"N":1}}',
        [SMS],
    ),
    *[
        (f"delivery report {word}", JSON, _dlr_body(word), [_dlr(word, status=status)])
        for word, status in [
            *STATUS_MAP.items(),
            ("Delivered", "delivered"),
            ("sent", "sent"),
            ("queued", "queued"),
            ("failed", "failed"),
            ("undelivered", "undelivered"),
            ("rejected", "rejected"),
            ("expired", "expired"),
            ("DELIVRD", "delivered"),
            ("Bounced", "unknown"),
        ]
    ],
    (
        "delivery report echoing a Message sentence",
        JSON,
        _dlr_body("Delivered", Message="Text message to 1646xxxxxxx has been delivered."),
        [_dlr("Delivered", status="delivered")],
    ),
    (
        "delivery report with DeliveryStatus, error and time",
        FORM,
        b"Id=pt-out-1&MobilePhone=16461234567&SendFrom=12345&DeliveryStatus=Failed&ErrorCode=1003"
        b"&ErrorMessage=Invalid+number&Timestamp=2026-01-02T03%3A04%3A05Z",
        [_dlr("Failed", status="failed", error_code="1003", error_message="Invalid number", occurred_at=AT)],
    ),
    (
        "delivery report as XML",
        XML,
        b"<response><Id>pt-out-1</Id><MobilePhone>16461234567</MobilePhone><SendFrom>12345</SendFrom>"
        b"<Status>undelivered</Status><ErrorCode>30</ErrorCode><Date>1767323045</Date></response>",
        [_dlr("undelivered", status="undelivered", error_code="30", occurred_at=AT)],
    ),
    (
        "seed 004's answer shape, well-formed",
        XML,
        b"<response>\n    <Id>8cccf554cd42bf1b22bcc2d9b4e4571a4a87c9d0</Id>\n    <DeliveryReportUrl>https://api2."
        b"protexting.com/v1/sms/delivery-report?access_token=t&amp;id=8ccc</DeliveryReportUrl>\n"
        b"<Message>Text message to 1646xxxxxxx has been sent.</Message> </response>",
        [
            MessageEvent(
                "8cccf554cd42bf1b22bcc2d9b4e4571a4a87c9d0",
                "inbound",
                None,
                (),
                text="Text message to 1646xxxxxxx has been sent.",
            )
        ],
    ),
    ("seed 004's answer verbatim is malformed XML", XML, SEED_004_XML, "invalid_xml"),
    ("missing Id", JSON, b'{"MobilePhone":"16461234567","Message":"Hi"}', "missing_field"),
    ("MobilePhone is an object", JSON, b'{"Id":"pt-1","MobilePhone":{"Number":"1646"}}', "invalid_payload"),
    ("two Message fields", FORM, b"Id=pt-1&Message=a&Message=b", "invalid_payload"),
    ("truncated JSON", JSON, b'{"Id":"pt-1","MobilePhone":"1646', "invalid_json"),
    ("form body sent as JSON", JSON, b"Id=pt-1&MobilePhone=16461234567", "invalid_json"),
    ("empty body", FORM, b"", "empty_body"),
    ("not UTF-8", FORM, b"Id=pt-1&Message=%FF&MobilePhone=\xff", "invalid_encoding"),
    (
        "XML with an entity declaration",
        XML,
        b'<!DOCTYPE response [<!ENTITY x "y">]><response><Id>&x;</Id></response>',
        "xml_forbidden",
    ),
]


@pytest.mark.parametrize("label, content_type, body, expected", PARSE_CASES, ids=[case[0] for case in PARSE_CASES])
def test_parse(label, content_type, body, expected):
    request = _request(body, content_type)
    if isinstance(expected, str):
        with pytest.raises(ParseFailed) as failure:
            ADAPTER.parse(request, MAIN)
        assert failure.value.code == expected
    else:
        assert ADAPTER.parse(request, MAIN) == expected


def test_a_connection_overrides_the_preset_field_by_field():
    connection = Connection(provider="protexting", name="c", secrets=[PT_TOKEN], options=CUSTOM_OPTIONS)
    assert ADAPTER.parse(_request(b"Id=pt-9&MobilePhone=16461234567&Body=Hello", FORM), connection) == [
        MessageEvent("pt-9", "inbound", "16461234567", (), text="Hello")
    ]
    assert ADAPTER.parse(_request(b"Id=pt-9&Status=DLVRD_OK", FORM), connection) == [
        StatusEvent("pt-9", "delivered", "DLVRD_OK")
    ]
    assert ADAPTER.parse(_request(b"Id=pt-9&Status=pending", FORM), connection) == [
        StatusEvent("pt-9", "queued", "pending")
    ]


@pytest.mark.parametrize(
    "options, message",
    [
        ({"fields": {"from": "Mobile..Phone"}}, "options.fields.from: 'Mobile..Phone' is not a path"),
        ({"status_map": {"Done": "finished"}}, "options.status_map: 'Done' maps to 'finished'"),
        ({"auth": {"kind": "none"}}, "options.auth.kind: 'none' checks no secret"),
    ],
)
def test_bad_overrides_stop_the_service_with_a_message_naming_them(tmp_path, options, message):
    config = base_test_config(tmp_path / "data", f"sqlite:///{tmp_path / 'unused.db'}")
    config["connections"] = [
        {"provider": "protexting", "name": "main", "tenant": TENANT_A, "secrets": [PT_TOKEN]},
        {"provider": "protexting", "name": "bad", "tenant": TENANT_A, "secrets": [PT_TOKEN], "options": options},
    ]
    with pytest.raises(ConfigError) as error:
        load_settings(environ={}, overrides=config)
    assert str(error.value).startswith("connections[1] (protexting/bad): " + message), str(error.value)


def test_the_preset_needs_no_options_and_a_basic_auth_only_connection_is_valid():
    assert ADAPTER.validate_options(MAIN) is None
    assert ADAPTER.validate_options(Connection(provider="protexting", basic_auth=["hook:pw"])) is None
    assert ADAPTER.acknowledgement == ("OK", "text/plain")


class TestProTextingSecurity(WebhookSecuritySuite):
    provider = "protexting"
    signature_headers = ()  # the token travels in the query string

    def genuine(self, *, body=None, secret=None, url_connection=None, timestamp=None) -> Req:
        body = body or b"Id=pt-sec-1&MobilePhone=16461234567&SendFrom=12345&Message=Hi"
        return Req(body=body, content_type=FORM, query=urlencode({"access_token": secret or PT_TOKEN}))

    def test_signature_over_a_different_body(self, client, runtime):
        """A shared token proves the sender, not the body: any body sent with the right token is
        accepted. (A provider able to sign bodies belongs on the mapping adapter's hmac kind.)"""
        other = self.genuine(body=b"Id=pt-sec-2&MobilePhone=16461234567&SendFrom=12345&Message=Other")
        assert self.send(client, other).status_code == 200

    @pytest.mark.parametrize(
        "query",
        [
            "",
            "access_token=",
            "access_token=wrong",
            "ACCESS_TOKEN=" + PT_TOKEN,
            "access_token=" + "A" * 5000,
            "access_token=%FF",
            "token=" + PT_TOKEN,
        ],
    )
    def test_missing_wrong_or_malformed_tokens(self, client, runtime, query):
        self._refused(client, runtime, Req(body=self.genuine().body, content_type=FORM, query=query))

    def test_the_token_is_never_stored(self, client, runtime):
        assert self.send(client, self.genuine()).status_code == 200
        assert self.send(client, self.genuine(secret="wrong")).status_code == 401
        with runtime.db.reading() as session:
            urls = [row.url for model in (RawRequest, QuarantinedRequest) for row in session.scalars(sa.select(model))]
        assert len(urls) == 2 and all(PT_TOKEN not in url and "wrong" not in url for url in urls)

    def test_basic_auth_alone(self, client):
        body = self.genuine().body
        good = {"Authorization": self._basic("hook", "pw")}
        assert self.send(client, Req(body=body, content_type=FORM, headers=good), "basic-only").status_code == 200
        assert self.send(client, Req(body=body, content_type=FORM), "basic-only").status_code == 401


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE response [
 <!ENTITY a "aaaaaaaaaa">
 <!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">
 <!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">
 <!ENTITY d "&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;">
 <!ENTITY e "&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;">
 <!ENTITY f "&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;">
 <!ENTITY g "&f;&f;&f;&f;&f;&f;&f;&f;&f;&f;">
 <!ENTITY h "&g;&g;&g;&g;&g;&g;&g;&g;&g;&g;">
]>
<response><Id>lol</Id><Message>&h;</Message></response>"""
XXE = b"""<?xml version="1.0"?>
<!DOCTYPE response [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<response><Id>xxe</Id><Message>&xxe;</Message></response>"""


def _post(client, body: bytes, content_type: str = FORM, connection: str = "main"):
    return client.post(
        f"/webhooks/protexting/{connection}?access_token={PT_TOKEN}", data=body, content_type=content_type
    )


class TestEndToEnd:
    @pytest.mark.parametrize("body", [XXE, BILLION_LAUGHS], ids=["xxe", "billion-laughs"])
    def test_hostile_xml_is_refused_and_quarantined(self, client, runtime, body):
        response = _post(client, body, XML)
        assert response.status_code == 400
        with runtime.db.reading() as session:
            [quarantined] = session.scalars(sa.select(QuarantinedRequest)).all()
        assert quarantined.reason_code == "xml_forbidden" and quarantined.body == body
        assert count(runtime, Message) == 0

    def test_an_inbound_mms_is_acknowledged_and_readable(self, client):
        response = _post(client, urlencode(MMS_PAIRS).encode())
        assert response.status_code == 200
        assert response.get_data(as_text=True) == "OK" and response.mimetype == "text/plain"
        message = client.get("/api/v1/providers/protexting/messages/pt-2", headers=AUTH_A).get_json()
        assert message["direction"] == "inbound" and message["status"] == "received"
        assert message["from"] == "+16461234567" and message["to"] == ["12345"]
        assert message["subject"] == "Photos" and message["text"] == "Look \U0001f600"
        assert [(a["declaredContentType"], a["status"]) for a in message["attachments"]] == [
            ("image/jpeg", "pending"),
            ("image/gif", "pending"),
        ]
        assert client.get(f"/api/v1/messages/{message['id']}", headers=AUTH_A).get_json()["id"] == message["id"]

    def test_delivered_then_a_late_sent_keeps_delivered(self, client):
        reports = [
            (JSON, _dlr_body("Delivered", Timestamp="2026-01-02T03:04:09Z")),
            (
                XML,
                b"<response><Id>pt-out-1</Id><Status>sent</Status><Timestamp>2026-01-02T03:04:05Z</Timestamp>"
                b"</response>",
            ),
        ]
        for content_type, body in reports:
            assert _post(client, body, content_type).status_code == 200
        message = client.get("/api/v1/providers/protexting/messages/pt-out-1", headers=AUTH_A).get_json()
        assert message["direction"] == "outbound" and message["status"] == "delivered"
        assert message["from"] == "12345" and message["to"] == ["+16461234567"]
        assert [h["providerStatus"] for h in message["statusHistory"]] == ["Delivered", "sent"]

    def test_a_connection_with_overrides(self, client):
        assert _post(client, b"Id=pt-c&MobilePhone=16461234567&Body=Hello", connection="custom").status_code == 200
        message = client.get("/api/v1/providers/protexting/messages/pt-c", headers=AUTH_A).get_json()
        assert message["text"] == "Hello" and message["connection"] == "custom"
