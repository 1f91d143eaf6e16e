"""Fuzzing every adapter through the app (issue 16): bodies shaped like each provider's, any part of them
replaced by what a hostile or broken sender puts there (tests/support/hostile_inputs.py), rendered as
JSON, form or XML with right and wrong content types, bad bytes spliced in. Every connection is an
unsigned development one, so that every body reaches the adapter's parse.

What must hold for every request: never a 5xx; and a request refused with a 4xx is kept in quarantine
with its reason ("every refused request is kept in quarantine", docs/architecture.md)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import example, given, settings
from hypothesis import strategies as st

from tests.support.hostile_inputs import (
    FUZZ_SETTINGS,
    form_body,
    header_values,
    hostile_text,
    json_body,
    mutated,
    percent_encoded,
    spliced,
    vocabulary,
    xml_body,
)
from tests.support.unsigned_connections import UNSIGNED, unsigned_connections, webhook_url
from webhook_service.database.tables import QuarantinedRequest

# 60 each for 13 connections on two databases: 1,560 webhooks a run (150 took 62 s of the suite's CPU).
EXAMPLES_PER_CONNECTION = 60

JSON, FORM, XML = "application/json", "application/x-www-form-urlencoded", "application/xml"
CONTENT_TYPES = {"json": JSON, "form": FORM, "xml": XML}
# What a sender may put in Content-Type instead of the right one.
OTHER_CONTENT_TYPES = (
    None,
    "",
    "text/plain",
    "application/json; charset=latin-1",
    "text/json",
    "application/vnd.api+json",
    FORM,
    "application/x-www-form-urlencoded; charset=utf-16",
    "multipart/form-data; boundary=x",
    XML,
    "text/xml; charset=utf-16",
    "application/atom+xml",
    "*/*",
    "\u00e9/\u00e9",
)

TIME = "2026-01-01T12:00:00Z"
NUMBER, OTHER = "+15550001111", "+15551234567"
IMAGE = "https://media.example.com/a.jpg"

# A body of each provider's, with every field the adapter reads, from which the fuzzer works.
STANDARD = {
    "type": "message.received",
    "data": {
        "providerMessageId": "m-1",
        "from": NUMBER,
        "to": [OTHER],
        "text": "hi",
        "subject": "s",
        "attachments": [{"url": IMAGE, "contentType": "image/jpeg", "name": "a.jpg", "size": 10}],
        "status": "delivered",
        "providerStatus": "DELIVRD",
        "errorCode": "0",
        "errorMessage": "none",
        "occurredAt": TIME,
    },
}
TWILIO = {
    "MessageSid": "SM1",
    "SmsSid": "SM1",
    "From": NUMBER,
    "To": OTHER,
    "Body": "hi",
    "NumMedia": "1",
    "MediaUrl0": IMAGE,
    "MediaContentType0": "image/jpeg",
    "MessageStatus": "delivered",
    "ErrorCode": "30003",
    "ErrorMessage": "unreachable",
    "RawDlrDoneDate": "2601011200",
}
PLIVO = {
    "MessageUUID": "u-1",
    "From": NUMBER,
    "To": OTHER,
    "Type": "mms",
    "Text": "hi",
    "Body": "hi",
    "MediaCount": "1",
    "Media0": IMAGE,
    "Status": "delivered",
    "ErrorCode": "000",
    "QueuedTime": "2026-01-01 12:00:00.000000",
    "SentTime": "2026-01-01 12:00:01",
    "DeliveryReportTime": TIME,
}
TELNYX = {
    "data": {
        "event_type": "message.finalized",
        "id": "e-1",
        "occurred_at": TIME,
        "payload": {
            "id": "m-1",
            "type": "MMS",
            "from": {"phone_number": NUMBER},
            "to": [{"phone_number": OTHER, "status": "delivered"}, {"phone_number": "+15550002222", "status": "sent"}],
            "cc": [{"phone_number": "+15550003333"}],
            "text": "hi",
            "subject": "s",
            "media": [{"url": IMAGE, "content_type": "image/jpeg", "size": 10}],
            "errors": [{"code": "40001", "title": "t", "detail": "d"}],
            "received_at": TIME,
            "sent_at": TIME,
            "completed_at": TIME,
        },
    },
    "meta": {"attempt": 1},
}
BIRD = {
    "event": "sms.outbound",
    "payload": {
        "id": "m-1",
        "status": "delivered",
        "sender": {"connector": {"identifierValue": NUMBER}},
        "receiver": {"contacts": [{"identifierValue": OTHER}], "contact": {"identifierValue": OTHER}},
        "body": {
            "type": "image",
            "image": {
                "text": "hi",
                "images": [{"mediaUrl": IMAGE, "contentType": "image/jpeg", "filename": "a.jpg"}],
                "metadata": {"subject": "s"},
            },
        },
        "failure": {"description": "d", "source": {"code": 5}},
        "createdAt": TIME,
        "updatedAt": TIME,
        "lastStatusAt": TIME,
    },
}
VONAGE_SMS = {
    "messageId": "m-1",
    "msisdn": "15550001111",
    "to": "15551234567",
    "text": "hi",
    "type": "text",
    "keyword": "HI",
    "message-timestamp": "2026-01-01 12:00:00",
    "concat": "true",
    "concat-ref": "7",
    "concat-total": "2",
    "concat-part": "1",
    "status": "delivered",
    "err-code": "0",
    "scts": "2601011200",
    "timestamp": "1767268800",
}
VONAGE_MESSAGES = {
    "message_uuid": "m-1",
    "from": {"number": NUMBER},
    "to": OTHER,
    "timestamp": TIME,
    "channel": "mms",
    "message_type": "image",
    "text": "hi",
    "image": {"url": IMAGE, "caption": "c", "name": "a.jpg"},
    "status": "rejected",
    "error": {"type": "https://developer.nexmo.com/api-errors/messages-olympus#1300", "title": 1300, "detail": "d"},
}
APPROVEDCONTACT = {
    "messageId": "m-1",
    "from": NUMBER,
    "tos": [OTHER],
    "targetNumber": OTHER,
    "message": "hi",
    "subject": "s",
    "attachments": [{"name": "a.jpg", "url": IMAGE, "contentType": "image/jpeg", "size": 10}],
    "mediaUrls": [IMAGE],
    "type": 1,
    "sentDate": TIME,
    "status": "delivered",
    "errorCode": "0",
    "error": {"code": "1", "message": "m"},
    "statusDate": TIME,
    "tenantId": "t",
    "threadId": 7,
}
ACME = {
    "event": "message.out",
    "event_id": "e-1",
    "data": {
        "id": "m-1",
        "sender": NUMBER,
        "origin": NUMBER,
        "recipients": [OTHER],
        "text": "hi",
        "subject": "s",
        "media": [{"url": IMAGE, "type": "image/jpeg", "filename": "a.jpg", "bytes": "10"}],
        "state": "DELIVERED_TO_HANDSET",
        "error": {"code": "1", "detail": "d"},
        "at": TIME,
        "segments": 2,
    },
}
FLAT = {
    "msg_id": "m-1",
    "from": NUMBER,
    "to": OTHER,
    "text": "hi",
    "media_url": IMAGE,
    "media_type": "image/jpeg",
    "status": "delivered",
    "err": "0",
    "timestamp": TIME,
}
PROTEXTING = {
    "Id": "m-1",
    "MobilePhone": NUMBER,
    "SendFrom": OTHER,
    "Message": "hi",
    "Body": "hi",
    "Subject": "s",
    "MmsTemplateId": "7",
    "ResourceLink": [IMAGE, IMAGE],
    "MediaContentType": ["image/jpeg", "image/png"],
    "FileName": ["a.jpg", "b.png"],
    "Status": "success",
    "ErrorCode": "0",
    "ErrorMessage": "none",
    "Timestamp": TIME,
}

# Status reports, where a shape tells them from messages (the intake derives their dedupe keys).
STANDARD_STATUS = {
    "type": "message.status",
    "data": {
        "providerMessageId": "m-1",
        "status": "undelivered",
        "providerStatus": "UNDELIV",
        "errorCode": "30003",
        "errorMessage": "unreachable",
        "occurredAt": TIME,
        "from": NUMBER,
        "to": [OTHER],
    },
}
TWILIO_STATUS = {key: TWILIO[key] for key in ("MessageSid", "From", "To", "MessageStatus", "ErrorCode", "ErrorMessage")}
PLIVO_STATUS = {key: PLIVO[key] for key in ("MessageUUID", "From", "To", "Status", "ErrorCode", "DeliveryReportTime")}
TELNYX_INBOUND = {"data": {**TELNYX["data"], "event_type": "message.received"}}
BIRD_INBOUND = {"event": "sms.inbound", "payload": {**BIRD["payload"], "status": None}}
APPROVEDCONTACT_STATUS = {"messageId": "m-1", "status": "failed", "errorCode": "7", "statusDate": TIME}
ACME_STATUS = {
    "event": "message.dlr",
    "data": {"id": "m-1", "state": "CARRIER_REJECTED", "error": {"code": "1"}, "at": TIME},
}
FLAT_STATUS = {"msg_id": "m-1", "status": "failed", "err": "7", "timestamp": TIME}
PROTEXTING_STATUS = {"Id": "m-1", "Status": "error", "ErrorCode": "7", "ErrorMessage": "x", "Timestamp": TIME}

# Per connection: the bodies to start from, the formats its adapter reads, the headers it reads.
TEMPLATES: dict[str, tuple[tuple[Any, ...], tuple[str, ...], tuple[str, ...]]] = {
    "standard/open": ((STANDARD, STANDARD_STATUS), ("json",), ()),
    "twilio/open": ((TWILIO, TWILIO_STATUS), ("form", "json"), ()),
    "plivo/open": ((PLIVO, PLIVO_STATUS), ("form", "json"), ()),
    "telnyx/open": ((TELNYX, TELNYX_INBOUND), ("json",), ()),
    "bird/open": ((BIRD, BIRD_INBOUND), ("json",), ()),
    "vonage/open": ((VONAGE_SMS, VONAGE_MESSAGES), ("json", "form"), ()),
    "approvedcontact/open": ((APPROVEDCONTACT, APPROVEDCONTACT_STATUS), ("json",), ("X-AC-WebhookEvent",)),
    "mapping/acme": ((ACME, ACME_STATUS), ("json", "xml", "form"), ("X-Acme-Event", "X-Acme-Channel")),
    "mapping/flat": ((FLAT, FLAT_STATUS), ("json", "form", "xml"), ()),
    "protexting/open": ((PROTEXTING, PROTEXTING_STATUS), ("json", "form", "xml"), ()),
    "protexting/custom": ((PROTEXTING, PROTEXTING_STATUS), ("xml", "form", "json"), ()),
}
HEADER_WORDS = ("MessageReceived", "MessageDelivered", "message.in", "message.dlr", "sms", "")


@dataclass(frozen=True)
class Webhook:
    body: bytes
    content_type: str | None
    headers: dict[str, str] = field(default_factory=dict)
    query: str = ""


@st.composite
def webhooks(draw: st.DrawFn, key: str) -> Webhook:
    templates, formats, header_names = TEMPLATES[key]
    template = draw(st.sampled_from(templates))
    document = draw(mutated(template, vocabulary(template)))
    body_format = draw(st.sampled_from(formats))
    if body_format == "json":
        body = json_body(document)
    elif body_format == "form":
        body = form_body(document)
    else:
        body = draw(xml_body(document))
    body = draw(spliced(body))
    right = CONTENT_TYPES[body_format]
    content_type = draw(st.one_of(st.just(right), st.just(right), st.sampled_from(OTHER_CONTENT_TYPES)))
    headers = {
        name: draw(st.one_of(st.sampled_from(HEADER_WORDS), header_values))
        for name in header_names
        if draw(st.booleans())
    }
    pairs = draw(st.lists(st.tuples(st.sampled_from(("token", "access_token", "x")), hostile_text), max_size=2))
    query = "&".join(f"{name}={percent_encoded(value)}" for name, value in pairs)
    return Webhook(body, content_type, headers, query)


# Bodies that found bugs (issue 16), kept as explicit examples of the connections they broke: those
# fault testing found, then those this test found on the code before the fixes.
FOUND: dict[str, tuple[Webhook, ...]] = {
    "standard/open": (
        Webhook(
            b'{"type":"message.status","data":{"providerMessageId":"m","status":"delivered",'
            b'"occurredAt":"0001-01-01T00:00:00+05:00"}}',
            JSON,
        ),
    ),
    "plivo/open": (Webhook(b"MessageUUID=u&Status=delivered&DeliveryReportTime=0001-01-01T00:00:00%2B05:00", FORM),),
    "vonage/open": (
        Webhook(b'{"messageId":"m","status":"\\ud800"}', JSON),
        Webhook(b'{"messageId":"m","status":"failed","err-code":"\\ud800"}', JSON),
    ),
    "mapping/acme": (Webhook(b'<?xml version="1.0" encoding="bogus"?><r/>', XML),),
    "protexting/open": (Webhook(b'<?xml version="1.0" encoding="bogus"?><r/>', XML),),
    "twilio/open": (Webhook(b'{"MessageSid": "SM1", "To": "+15551234567", "MessageStatus": "\\ud800"}', JSON),),
    "mapping/flat": (
        Webhook(b'{"msg_id": "m-1", "status": "failed", "err": "7", "timestamp": "0001-01-01T00:00:00+05:00"}', JSON),
    ),
    "protexting/custom": (Webhook(b'<?xml version="1.0" encoding="idna"?><r><Id>m-1</Id></r>', XML),),
}


@pytest.fixture
def settings_overrides() -> dict:
    return {"connections": unsigned_connections()}


def _quarantined(runtime, request_id: str) -> QuarantinedRequest | None:
    with runtime.db.reading() as session:
        return session.scalars(sa.select(QuarantinedRequest).where(QuarantinedRequest.request_id == request_id)).first()


@pytest.mark.slow
@pytest.mark.parametrize(
    "provider, name",
    [(provider, name) for provider, name, _ in UNSIGNED],
    ids=[f"{provider}/{name}" for provider, name, _ in UNSIGNED],
)
def test_no_webhook_is_a_server_error_and_every_refusal_is_kept(client, runtime, provider, name):
    key = f"{provider}/{name}"

    def check(webhook: Webhook) -> None:
        url = webhook_url(provider, name) + (f"?{webhook.query}" if webhook.query else "")
        headers = dict(webhook.headers)
        if webhook.content_type is not None:
            headers["Content-Type"] = webhook.content_type
        response = client.post(url, data=webhook.body, headers=headers)
        assert response.status_code < 500, response.get_data(as_text=True)
        if response.status_code >= 400:
            kept = _quarantined(runtime, response.headers["X-Request-Id"])
            assert kept is not None, f"a {response.status_code} was not kept in quarantine"
            assert kept.http_status == response.status_code
            assert kept.reason_code and kept.reason

    fuzz = given(webhooks(key))(check)
    for found in FOUND.get(key, ()):
        fuzz = example(found)(fuzz)
    settings(FUZZ_SETTINGS, max_examples=EXAMPLES_PER_CONNECTION)(fuzz)()
