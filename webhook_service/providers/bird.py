"""Bird (formerly MessageBird) Channels API webhooks for SMS channels (seeds 002/003).

Envelope: {"service": "channels", "event": "sms.inbound" | "sms.outbound", "payload": <message>}, the
message object of seed 002: id, channelId, sender, receiver, body, status, reason, direction
(incoming | outgoing), parts, failure {description, source {code, name}}, lastStatusAt, createdAt,
updatedAt. Body types: text (body.text.text, optional body.text.attachments[].mediaUrl + filename),
image (body.image.images[].mediaUrl, optional body.image.text) and file (body.file.files[].mediaUrl +
contentType, optional body.file.text); each may carry body.<type>.metadata.subject.

Mapping:
- sms.inbound -> an inbound MessageEvent: from = sender.contact.identifierValue, to =
  receiver.connector.identifierValue (Bird reports inbound messages as `delivered`; inbound messages
  are `received` in this service whatever Bird says).
- sms.outbound -> the outbound MessageEvent (content; the intake keeps the first copy) and a
  StatusEvent: from = sender.connector.identifierValue, to = receiver.contacts[].identifierValue.
- Any other event -> no events: the intake answers 200 and keeps the raw request.

Verification: `messagebird-signature` = base64(HMAC-SHA256(signing key, "{messagebird-request-timestamp}\\n"
"{subscription URL}\\n" + sha256(raw body) as 32 raw bytes)). The URL is the public URL the intake
rebuilt from configuration (set the connection's public_url when a proxy rewrites it). Bird retries for
8 hours and keeps the original timestamp, so the default window is 9 hours (a connection may narrow it
with timestamp_tolerance_seconds); a replay inside the window is a harmless duplicate, because messages
dedupe on their id and status reports on their status and time. `messagebird-request-id` is not
signed, so it proves nothing and is not required.

Assumptions (not documented by Bird):
- Where a party's preferred address is missing the other form is used: a sender's contact or contacts,
  then its connector; a receiver's connector (inbound) or contacts (outbound), then the other.
- The direction comes from the event name, not payload.direction.
- A status report has no event id of its own; its time is lastStatusAt (else updatedAt), so the intake's
  derived key (status, error code, time) is stable across Bird's retries and distinct per change.
- The error is failure.source.code and failure.description; `reason` is informational and not mapped.
- `processing` (Bird is handling the message, not yet handed to a carrier) maps to `sending`.
- Bird reports one status per message, so a message to several contacts gets one StatusEvent.
- Media downloads: Bird does not document whether media URLs need authentication. The connection's
  media_auth (e.g. kind "header", header "Authorization", value "AccessKey ...") is sent only to the
  hosts listed in media_auth.hosts; none are assumed, since Bird's media host is not documented either.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from webhook_service.config.model import Connection
from webhook_service.model.events import Event, MediaRef, MessageEvent, StatusEvent
from webhook_service.model.statuses import canonical
from webhook_service.providers.base import ProviderAdapter, VerificationFailed, WebhookRequest
from webhook_service.providers.fields import invalid_payload, parse_time, text_or_none
from webhook_service.providers.signatures import check_timestamp, constant_time_equal, decode_base64, require_header

# payload.status (seed 002) -> canonical status.
STATUSES = {
    "accepted": "accepted",
    "rejected": "rejected",
    "processing": "sending",
    "scheduled": "scheduled",
    "sent": "sent",
    "sending_failed": "failed",
    "delivered": "delivered",
    "delivery_failed": "undelivered",
    "deleted": "deleted",
}

INBOUND_EVENT = "sms.inbound"
OUTBOUND_EVENT = "sms.outbound"

SIGNATURE_HEADER = "messagebird-signature"
TIMESTAMP_HEADER = "messagebird-request-timestamp"
RETRY_WINDOW_SECONDS = 9 * 3600


class _Payload(BaseModel):
    # Bird adds fields without notice: they stay in the raw request.
    model_config = ConfigDict(populate_by_name=True, extra="allow")


class _Identifier(_Payload):
    identifier_value: str | None = Field(default=None, alias="identifierValue", max_length=64)


class _Party(_Payload):
    contact: _Identifier | None = None
    contacts: list[_Identifier] = Field(default_factory=list)
    connector: _Identifier | None = None

    def contact_addresses(self) -> list[str]:
        return _values([self.contact, *self.contacts])

    def connector_addresses(self) -> list[str]:
        return _values([self.connector])


class _Media(_Payload):
    media_url: str = Field(alias="mediaUrl", min_length=1, max_length=4096)
    content_type: str | None = Field(default=None, alias="contentType", max_length=255)
    filename: str | None = Field(default=None, max_length=255)


class _Metadata(_Payload):
    subject: str | None = None


class _Content(_Payload):
    """body.text, body.image or body.file: the text, the media of that type, the subject."""

    text: str | None = None
    attachments: list[_Media] = Field(default_factory=list)
    images: list[_Media] = Field(default_factory=list)
    files: list[_Media] = Field(default_factory=list)
    metadata: _Metadata | None = None


class _Body(_Payload):
    type: str | None = None
    text: _Content | None = None
    image: _Content | None = None
    file: _Content | None = None

    def content(self) -> _Content | None:
        return {"text": self.text, "image": self.image, "file": self.file}.get(self.type or "")


class _FailureSource(_Payload):
    code: str | int | None = None


class _Failure(_Payload):
    description: str | None = None
    source: _FailureSource | None = None


class _Message(_Payload):
    id: str = Field(min_length=1, max_length=255)
    status: str | None = Field(default=None, max_length=64)
    sender: _Party | None = None
    receiver: _Party | None = None
    body: _Body | None = None
    failure: _Failure | None = None
    # Times are read leniently (parse_time): a bad one is not worth refusing the message over.
    created_at: Any = Field(default=None, alias="createdAt")
    updated_at: Any = Field(default=None, alias="updatedAt")
    last_status_at: Any = Field(default=None, alias="lastStatusAt")


class _Envelope(_Payload):
    event: str = Field(max_length=128)
    payload: Any = None


class BirdAdapter(ProviderAdapter):
    name = "bird"
    timestamp_tolerance = RETRY_WINDOW_SECONDS

    def verify(self, request: WebhookRequest, connection: Connection) -> None:
        signature = decode_base64(require_header(request, SIGNATURE_HEADER, max_length=256), SIGNATURE_HEADER)
        timestamp = require_header(request, TIMESTAMP_HEADER, max_length=32)
        check_timestamp(timestamp, request, self.tolerance(connection), TIMESTAMP_HEADER)
        signed_content = b"\n".join([timestamp.encode(), request.url.encode(), hashlib.sha256(request.body).digest()])
        for secret in connection.secrets:
            expected = hmac.new(secret.encode(), signed_content, hashlib.sha256).digest()
            if constant_time_equal(expected, signature):
                return
        raise VerificationFailed("invalid_signature", f"{SIGNATURE_HEADER} matches no configured signing key")

    def parse(self, request: WebhookRequest, connection: Connection) -> list[Event]:
        try:
            envelope = _Envelope.model_validate(request.json_object())
            if envelope.event not in (INBOUND_EVENT, OUTBOUND_EVENT):
                return []
            message = _Message.model_validate(envelope.payload)
        except ValidationError as error:
            raise invalid_payload(error) from None
        sender = message.sender or _Party()
        receiver = message.receiver or _Party()
        inbound = envelope.event == INBOUND_EVENT
        if inbound:
            senders = sender.contact_addresses() or sender.connector_addresses()
            recipients = receiver.connector_addresses() or receiver.contact_addresses()
        else:
            senders = sender.connector_addresses() or sender.contact_addresses()
            recipients = receiver.contact_addresses() or receiver.connector_addresses()
        body = message.body.content() if message.body else None
        content = MessageEvent(
            provider_message_id=message.id,
            direction="inbound" if inbound else "outbound",
            from_=senders[0] if senders else None,
            to=tuple(recipients),
            text=body.text if body else None,
            subject=body.metadata.subject if body and body.metadata else None,
            media=_media(body) if body else (),
            occurred_at=parse_time(message.created_at),
        )
        if inbound or not message.status:
            return [content]
        failure = message.failure or _Failure()
        return [
            content,
            StatusEvent(
                provider_message_id=message.id,
                status=canonical(STATUSES, message.status),
                provider_status=message.status,
                occurred_at=parse_time(message.last_status_at) or parse_time(message.updated_at),
                error_code=text_or_none(failure.source.code) if failure.source else None,
                error_message=failure.description,
                from_=content.from_,
                to=content.to,
            ),
        ]


def _media(content: _Content) -> tuple[MediaRef, ...]:
    return tuple(
        MediaRef(url=item.media_url, content_type=item.content_type, name=item.filename)
        for item in [*content.images, *content.files, *content.attachments]
    )


def _values(identifiers: list[_Identifier | None]) -> list[str]:
    return [
        identifier.identifier_value
        for identifier in identifiers
        if identifier is not None and identifier.identifier_value
    ]
