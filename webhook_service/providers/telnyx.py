"""Telnyx Messaging (API v2) webhooks: JSON events signed with Ed25519.

Verified with the cryptography package's Ed25519 directly rather than the telnyx SDK (a REST client with
its own dependency tree around the same call); the Ed25519 vector in the tests pins the scheme.

Envelope (https://developers.telnyx.com/docs/messaging/messages/receiving-webhooks):
    {"data": {"event_type": "message.received" | "message.sent" | "message.finalized",
              "id": "<event uuid>", "occurred_at": "...", "record_type": "event",
              "payload": {"id": "<message id>", "direction": "...", "type": "SMS" | "MMS",
                          "from": {"phone_number": "..."}, "to": [{"phone_number": "...", "status": "..."}],
                          "cc": [{"phone_number": "..."}], "text": "...", "subject": "...",
                          "media": [{"url": "...", "content_type": "...", "size": 1, "hash_sha256": "..."}],
                          "errors": [{"code": "...", "title": "...", "detail": "..."}],
                          "received_at": "...", "sent_at": "...", "completed_at": "..."}},
     "meta": {"attempt": 1, "delivered_to": "..."}}

Mapping:
- message.received -> an inbound MessageEvent.
- message.sent and message.finalized -> the outbound MessageEvent (its content; the intake keeps only
  the first copy) plus one StatusEvent per recipient that carries a status.
- Any other event type -> no events: the intake answers 200 and keeps the raw request.

Verification: `telnyx-signature-ed25519` (base64 of 64 bytes) is the Ed25519 signature of
"{telnyx-timestamp}|{raw body}" under the account's public key; the timestamp must be within 300 s.
Connection secrets are the base64 public keys shown in the Telnyx portal (rotation: list both); a secret
that is not a 32-byte base64 key, or is one of small order, is refused at start.

Media links are public and short-lived: no credentials are needed, and the worker fetches them at once.

Assumptions (not stated by Telnyx's documentation):
- The message's recipients are `to[]` followed by `cc[]` (a group MMS went to all of them).
- A status report's event id is `data.id`, which Telnyx keeps across its retries of one event. A message
  with several recipients yields one StatusEvent per recipient, identified "{data.id}:{phone number}";
  the message's current status then follows the forward-only rule over them, and the history keeps each.
- `errors[0]` describes the failure of every recipient of that event (Telnyx reports errors per message).
- `delivery_unconfirmed` (the carrier accepted the message but never confirmed delivery) maps to `sent`:
  that is all that is known, and a later `delivered` may still advance it.
- A message's time is `payload.received_at` (when Telnyx received it), else the event's `occurred_at`; a
  status report's time is the event's `occurred_at`, else `completed_at` or `sent_at`.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from webhook_service.config.model import Connection
from webhook_service.model.events import Event, MediaRef, MessageEvent, StatusEvent
from webhook_service.model.statuses import canonical
from webhook_service.providers.base import ProviderAdapter, VerificationFailed, WebhookRequest
from webhook_service.providers.fields import invalid_payload, parse_time, text_or_none
from webhook_service.providers.signatures import check_timestamp, decode_base64, require_header

# to[].status -> canonical status.
STATUSES = {
    "queued": "queued",
    "sending": "sending",
    "sent": "sent",
    "expired": "expired",
    "sending_failed": "failed",
    "delivery_unconfirmed": "sent",
    "delivered": "delivered",
    "delivery_failed": "undelivered",
}

INBOUND_EVENT = "message.received"
OUTBOUND_EVENTS = frozenset({"message.sent", "message.finalized"})

SIGNATURE_HEADER = "telnyx-signature-ed25519"
TIMESTAMP_HEADER = "telnyx-timestamp"
ED25519_SIGNATURE_BYTES = 64
ED25519_PUBLIC_KEY_BYTES = 32
_KEY_SHAPE = "the portal shows the account's Ed25519 public key as the base64 of 32 bytes"
# edwards25519: the field prime, and the y coordinates of its points of order 1, 2, 4 and 8.
_FIELD_PRIME = 2**255 - 19
_ORDER_8_Y = 0x7A03AC9277FDC74EC6CC392CFA53202A0F67100D760B3CBA4FD84D3D706A17C7
_SMALL_ORDER_Y = frozenset({1, _FIELD_PRIME - 1, 0, _ORDER_8_Y, _FIELD_PRIME - _ORDER_8_Y})


class _Payload(BaseModel):
    # Telnyx adds fields without notice: they stay in the raw request.
    model_config = ConfigDict(populate_by_name=True, extra="allow")


class _Address(_Payload):
    phone_number: str | None = Field(default=None, max_length=64)
    status: str | None = Field(default=None, max_length=64)


class _Media(_Payload):
    url: str = Field(min_length=1, max_length=4096)
    content_type: str | None = Field(default=None, max_length=255)
    size: int | None = Field(default=None, ge=0)


class _Error(_Payload):
    code: str | int | None = None
    title: str | None = None
    detail: str | None = None


class _Message(_Payload):
    id: str = Field(min_length=1, max_length=255)
    from_: _Address | None = Field(default=None, alias="from")
    to: list[_Address] = Field(default_factory=list)
    cc: list[_Address] = Field(default_factory=list)
    text: str | None = None
    subject: str | None = None
    media: list[_Media] = Field(default_factory=list)
    errors: list[_Error] = Field(default_factory=list)
    # Times are read leniently (parse_time): a bad one is not worth refusing the message over.
    received_at: Any = None
    sent_at: Any = None
    completed_at: Any = None


class _Event(_Payload):
    event_type: str = Field(max_length=128)
    id: str | None = Field(default=None, max_length=128)
    occurred_at: Any = None
    payload: Any = None


class _Envelope(_Payload):
    data: _Event


class TelnyxAdapter(ProviderAdapter):
    name = "telnyx"
    timestamp_tolerance = 300

    def verify(self, request: WebhookRequest, connection: Connection) -> None:
        signature = decode_base64(require_header(request, SIGNATURE_HEADER, max_length=256), SIGNATURE_HEADER)
        if len(signature) != ED25519_SIGNATURE_BYTES:
            raise VerificationFailed(
                "malformed_signature", f"{SIGNATURE_HEADER} is {len(signature)} bytes, not {ED25519_SIGNATURE_BYTES}"
            )
        timestamp = require_header(request, TIMESTAMP_HEADER, max_length=32)
        check_timestamp(timestamp, request, self.tolerance(connection), TIMESTAMP_HEADER)
        signed_content = timestamp.encode() + b"|" + request.body
        for secret in connection.secrets:
            try:
                public_key = _public_key(secret)
            except ValueError:
                # Not a key at all: the settings refuse such a secret (validate_secrets), but a connection
                # made without them may hold one. It can match nothing; the others still may.
                continue
            try:
                public_key.verify(signature, signed_content)
            except InvalidSignature:
                continue
            return
        raise VerificationFailed("invalid_signature", f"{SIGNATURE_HEADER} matches no configured public key")

    def validate_secrets(self, connection: Connection) -> str | None:
        for index, secret in enumerate(connection.secrets):
            try:
                _public_key(secret)
            except ValueError as error:
                return f"secrets[{index}]: not a Telnyx public key: {error}"
        return None

    def parse(self, request: WebhookRequest, connection: Connection) -> list[Event]:
        try:
            event = _Envelope.model_validate(request.json_object()).data
            if event.event_type != INBOUND_EVENT and event.event_type not in OUTBOUND_EVENTS:
                return []
            message = _Message.model_validate(event.payload)
        except ValidationError as error:
            raise invalid_payload(error) from None
        inbound = event.event_type == INBOUND_EVENT
        content = MessageEvent(
            provider_message_id=message.id,
            direction="inbound" if inbound else "outbound",
            from_=message.from_.phone_number if message.from_ else None,
            to=tuple(address.phone_number for address in message.to + message.cc if address.phone_number),
            text=message.text,
            subject=message.subject,
            media=tuple(
                MediaRef(url=media.url, content_type=media.content_type, size=media.size) for media in message.media
            ),
            occurred_at=parse_time(message.received_at) or parse_time(event.occurred_at),
        )
        if inbound:
            return [content]
        return [content, *_status_events(event, message, content)]


def _status_events(event: _Event, message: _Message, content: MessageEvent) -> list[StatusEvent]:
    # Only the recipients the report gives a status for: (address, status).
    recipients = [(address, address.status) for address in message.to if address.status]
    error = message.errors[0] if message.errors else None
    occurred_at = parse_time(event.occurred_at) or parse_time(message.completed_at) or parse_time(message.sent_at)
    return [
        StatusEvent(
            provider_message_id=message.id,
            status=canonical(STATUSES, status),
            provider_status=status,
            occurred_at=occurred_at,
            error_code=text_or_none(error.code) if error else None,
            error_message=(error.detail or error.title) if error else None,
            event_id=_event_id(event, recipient, several=len(recipients) > 1),
            from_=content.from_,
            to=(recipient.phone_number,) if recipient.phone_number else content.to,
        )
        for recipient, status in recipients
    ]


def _event_id(event: _Event, recipient: _Address, *, several: bool) -> str | None:
    if not event.id:
        return None  # the intake derives a key from status, error and time
    return f"{event.id}:{recipient.phone_number}" if several else event.id


def _public_key(secret: str) -> Ed25519PublicKey:
    """The public key a secret holds; ValueError saying why it holds none (without quoting it)."""
    try:
        raw = base64.b64decode(secret.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"not base64 ({_KEY_SHAPE})") from None
    if len(raw) != ED25519_PUBLIC_KEY_BYTES:
        raise ValueError(f"the base64 of {len(raw)} bytes ({_KEY_SHAPE})")
    if _has_small_order(raw):
        raise ValueError("a key of small order, under which forged signatures verify (a placeholder?)")
    return Ed25519PublicKey.from_public_bytes(raw)


def _has_small_order(raw: bytes) -> bool:
    """Whether the key is one of the eight points of small order (in any encoding, canonical or not).
    OpenSSL accepts such a key, and under it a forged signature such as 64 zero bytes verifies for
    many messages: a placeholder secret like "AAAA...A=" must not become an open door."""
    y = (int.from_bytes(raw, "little") & ((1 << 255) - 1)) % _FIELD_PRIME
    return y in _SMALL_ORDER_Y
