"""Approved Contact (seeds 000/001; partly verified).

Verified, seed 001 ("Incoming MMS Webhook Payload"):
    {"messageId": "3fa85f64-...", "from": "+15551234567", "message": "Here's the photo you requested",
     "attachments": [{"name": "photo.jpg", "url": "https://storage.approvedcontact.com/...",
                      "contentType": "image/jpeg", "size": 512000}]}
From Approved Contact's public documentation (not in the seeds): the fields `tos` (list of our numbers),
`type` (0 inbound, 1 outbound, 2 system), `tenantId`, `sentDate`, `targetNumber`, `phoneNumberId`,
`threadId`, `segmentCount`, `tag`, and the headers `X-AC-WebhookEvent` (e.g. `MessageReceived`),
`X-AC-Signature` and `X-AC-Timestamp`.

Assumptions, each made tolerant (the intake keeps the raw request whatever this module maps):
- Signature: NOT verified against live traffic. `X-AC-Signature` is taken to be
  HMAC-SHA256(webhook secret, f"{X-AC-Timestamp}.{raw body}"), hex or base64, with or without a
  "sha256=" prefix; `X-AC-Timestamp` is unix seconds, accepted within 300 s of arrival (a connection's
  timestamp_tolerance_seconds overrides it). A tenant may configure Basic auth instead or as well: the
  intake checks that, and this module's verify runs only for connections with secrets.
- Status webhook: undocumented. Accepted as {"messageId", "status", ...} with aliases
  (messageStatus/deliveryStatus for the status, errorCode/error_code/error for the error code, an
  `error` object {code, message}, errorMessage/errorDescription for the message, statusDate/updatedAt/
  statusUpdatedAt/timestamp for the time). The statuses are seed 000's `queued sending sent delivered
  failed`; STATUS_MAP also takes a few self-explanatory words in case the webhook uses them. AC
  documents no stable event id, so reports are deduplicated on (status, error code, time).
- Inbound or status: X-AC-WebhookEvent decides when it is a name listed below; otherwise the shape does
  (a status and neither text nor attachments is a status report). Event names that carry the status
  themselves (MessageDelivered...) give it when the body has none.
- `type` 1 (an outbound message reported in full) becomes an outbound message, plus its status when
  the body carries one; `type` 2 (a system message: no subscriber content) produces no event, the raw
  request is still stored. `type` may also arrive as its enum name ("Inbound", "Outbound", "System").
- To = `tos`, else `targetNumber`, else `to`. The text is `message` (aliases `body`, `text`); an
  outbound report may list its media as `mediaUrls` (the send API's name) instead of `attachments`.
- The acknowledgement is {"success": true} as application/json, as seed 001's example receiver answers.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError, field_validator

from webhook_service.config.model import Connection
from webhook_service.model.events import Event, MediaRef, MessageEvent, StatusEvent
from webhook_service.model.statuses import canonical
from webhook_service.providers.base import ParseFailed, ProviderAdapter, VerificationFailed, WebhookRequest
from webhook_service.providers.fields import invalid_payload, parse_time
from webhook_service.providers.signatures import check_timestamp, constant_time_equal, decode_base64, require_header

SIGNATURE_HEADER = "X-AC-Signature"
TIMESTAMP_HEADER = "X-AC-Timestamp"
EVENT_HEADER = "X-AC-WebhookEvent"

# Seed 000's statuses first; the rest are guesses that only name themselves.
STATUS_MAP = {
    "queued": "queued",
    "sending": "sending",
    "sent": "sent",
    "delivered": "delivered",
    "failed": "failed",
    "accepted": "accepted",
    "scheduled": "scheduled",
    "undelivered": "undelivered",
    "rejected": "rejected",
    "expired": "expired",
    "canceled": "canceled",
    "cancelled": "canceled",
    "read": "read",
}

# X-AC-WebhookEvent values, compared lower-case without punctuation. Only MessageReceived is documented.
INBOUND_EVENTS = frozenset({"messagereceived", "inboundmessage", "messageinbound", "incomingmessage"})
STATUS_EVENTS = frozenset(
    {
        "messagestatus",
        "messagestatusupdated",
        "messagestatuschanged",
        "statusupdated",
        "statuschanged",
        "deliveryreport",
        "deliverystatus",
    }
)
# Event names that say the status themselves.
STATUS_OF_EVENT = {
    "messagequeued": "queued",
    "messagesent": "sent",
    "messagedelivered": "delivered",
    "messagefailed": "failed",
}

# A message's `type`: a direction, or a system notice with nothing to store.
MessageType = Literal["inbound", "outbound", "system"]
MESSAGE_TYPES: dict[str, MessageType] = {
    "0": "inbound",
    "inbound": "inbound",
    "1": "outbound",
    "outbound": "outbound",
    "2": "system",
    "system": "system",
}
# Provider facts kept on the message (scalars only).
EXTRA_FIELDS = ("tenantId", "phoneNumberId", "threadId", "segmentCount", "tag")

_HEX_SHA256 = re.compile(r"[0-9a-fA-F]{64}")
_NOT_ALPHANUMERIC = re.compile(r"[^a-z0-9]")
# Valid JSON escapes that no database text column accepts ("\u0000", "\ud800").
_UNSTORABLE = re.compile(r"[\x00\ud800-\udfff]")


class _Payload(BaseModel):
    # Numbers where strings are expected (an id or a phone number as a JSON number) are taken as text.
    model_config = ConfigDict(extra="allow", coerce_numbers_to_str=True)

    @field_validator("*")
    @classmethod
    def _storable(cls, value: Any) -> Any:
        if any(
            isinstance(text, str) and _UNSTORABLE.search(text)
            for text in (value if isinstance(value, list) else [value])
        ):
            raise ValueError("contains a NUL character or an unpaired surrogate, which cannot be stored")
        return value


class _Attachment(_Payload):
    url: str = Field(min_length=1, max_length=4096)
    content_type: str | None = Field(
        default=None, max_length=255, validation_alias=AliasChoices("contentType", "mimeType", "content_type")
    )
    name: str | None = Field(default=None, max_length=255, validation_alias=AliasChoices("name", "fileName"))
    size: int | None = Field(default=None, ge=0, le=2**53)


class _Error(_Payload):
    code: str | None = Field(default=None, max_length=64)
    message: str | None = None


class _Body(_Payload):
    message_id: str = Field(min_length=1, max_length=255, validation_alias=AliasChoices("messageId", "id"))
    type: str | None = Field(default=None, max_length=16)
    from_: str | None = Field(default=None, max_length=64, validation_alias="from")
    tos: list[str] | None = Field(default=None, max_length=100)
    target_number: str | None = Field(default=None, max_length=64, validation_alias="targetNumber")
    to: list[str] | str | None = Field(default=None, max_length=100)
    text: str | None = Field(default=None, validation_alias=AliasChoices("message", "body", "text"))
    subject: str | None = None
    attachments: list[_Attachment] = Field(default_factory=list, max_length=20)
    media_urls: list[str] = Field(default_factory=list, max_length=20, validation_alias="mediaUrls")
    sent_date: str | None = Field(default=None, max_length=64, validation_alias="sentDate")
    status: str | None = Field(
        default=None, max_length=64, validation_alias=AliasChoices("status", "messageStatus", "deliveryStatus")
    )
    error_code: str | None = Field(
        default=None, max_length=64, validation_alias=AliasChoices("errorCode", "error_code")
    )
    error: _Error | str | None = Field(default=None)
    error_message: str | None = Field(default=None, validation_alias=AliasChoices("errorMessage", "errorDescription"))
    status_date: str | None = Field(
        default=None,
        max_length=64,
        validation_alias=AliasChoices("statusDate", "updatedAt", "statusUpdatedAt", "timestamp"),
    )

    @property
    def recipients(self) -> tuple[str, ...]:
        if self.tos:
            return tuple(self.tos)
        if self.target_number:
            return (self.target_number,)
        if isinstance(self.to, str):
            return (self.to,)
        return tuple(self.to or ())

    @property
    def media(self) -> tuple[MediaRef, ...]:
        if self.attachments:
            return tuple(
                MediaRef(url=a.url, content_type=a.content_type, name=a.name, size=a.size) for a in self.attachments
            )
        return tuple(MediaRef(url=url) for url in self.media_urls if url)


class ApprovedContactAdapter(ProviderAdapter):
    name = "approvedcontact"
    timestamp_tolerance = 300
    acknowledgement = ('{"success": true}', "application/json")

    def verify(self, request: WebhookRequest, connection: Connection) -> None:
        signature = require_header(request, SIGNATURE_HEADER, max_length=256)
        timestamp = require_header(request, TIMESTAMP_HEADER, max_length=32)
        check_timestamp(timestamp, request, self.tolerance(connection), TIMESTAMP_HEADER)
        offered = _decode_signature(signature)
        signed = timestamp.encode() + b"." + request.body
        # Every secret is tried (rotation) without stopping at the first match.
        matches = [
            constant_time_equal(hmac.new(secret.encode(), signed, hashlib.sha256).digest(), offered)
            for secret in connection.secrets
        ]
        if not any(matches):
            raise VerificationFailed("invalid_signature", f"{SIGNATURE_HEADER} matches no configured secret")

    def parse(self, request: WebhookRequest, connection: Connection) -> list[Event]:
        try:
            body = _Body.model_validate(request.json_object())
        except ValidationError as error:
            raise invalid_payload(error) from None
        event_name = _NOT_ALPHANUMERIC.sub("", (request.headers.get(EVENT_HEADER) or "").lower())
        if _is_status_report(body, event_name):
            return [_status_event(body, event_name)]
        kind = MESSAGE_TYPES.get((body.type or "0").strip().lower(), "inbound")
        if kind == "system":
            return []
        message = MessageEvent(
            provider_message_id=body.message_id,
            direction=kind,
            from_=body.from_,
            to=body.recipients,
            text=body.text or None,
            subject=body.subject or None,
            media=body.media,
            occurred_at=parse_time(body.sent_date),
            extra=_extra(body),
        )
        if kind == "outbound" and body.status:
            return [message, _status_event(body, event_name)]
        return [message]


def _decode_signature(value: str) -> bytes:
    """The 32-byte digest from hex or base64, with or without a "sha256=" prefix."""
    if value[:7].lower() == "sha256=":
        value = value[7:]
    if _HEX_SHA256.fullmatch(value):
        return bytes.fromhex(value)
    digest = decode_base64(value, SIGNATURE_HEADER)
    if len(digest) != hashlib.sha256().digest_size:
        raise VerificationFailed("malformed_signature", f"{SIGNATURE_HEADER} is not a SHA-256 digest")
    return digest


def _is_status_report(body: _Body, event_name: str) -> bool:
    if event_name in INBOUND_EVENTS:
        return False
    if event_name in STATUS_EVENTS or event_name in STATUS_OF_EVENT:
        return True
    return bool(body.status) and not body.text and not body.media


def _status_event(body: _Body, event_name: str) -> StatusEvent:
    provider_status = body.status or STATUS_OF_EVENT.get(event_name)
    if not provider_status:
        raise ParseFailed("invalid_payload", "status report without a status")
    error_code, error_message = body.error_code, body.error_message
    if isinstance(body.error, _Error):
        error_code, error_message = error_code or body.error.code, error_message or body.error.message
    elif body.error:
        error_code = error_code or body.error[:64]
    return StatusEvent(
        provider_message_id=body.message_id,
        status=canonical(STATUS_MAP, provider_status),
        provider_status=provider_status,
        occurred_at=parse_time(body.status_date or body.sent_date),
        error_code=error_code,
        error_message=error_message,
        from_=body.from_,
        to=body.recipients,
    )


def _extra(body: _Body) -> dict:
    extras = body.model_extra or {}
    return {
        name: extras[name]
        for name in EXTRA_FIELDS
        if isinstance(extras.get(name), (str, int, float, bool))
        and len(str(extras[name])) <= 255
        and not _UNSTORABLE.search(str(extras[name]))
    }
