"""Standard Webhooks (https://www.standardwebhooks.com) carrying this service's canonical JSON.

For senders that are not SMS providers: an in-house gateway, another instance of this service, a test
harness. Signed content is "{webhook-id}.{webhook-timestamp}.{raw body}" (HMAC-SHA256 with the
`whsec_...` secret, via the reference `standardwebhooks` package); `webhook-id` is the idempotency key.

Body:
    {"type": "message.received", "data": {"providerMessageId": "...", "from": "+1...", "to": ["+1..."],
                                          "text": "...", "subject": null,
                                          "attachments": [{"url": "...", "contentType": "image/jpeg",
                                                           "name": "a.jpg", "size": 123}]}}
    {"type": "message.sent", "data": {...same, an outbound message...}}
    {"type": "message.status", "data": {"providerMessageId": "...", "status": "delivered",
                                        "providerStatus": "DELIVRD", "errorCode": null,
                                        "errorMessage": null, "occurredAt": "2026-01-01T00:00:00Z"}}
"""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from standardwebhooks.webhooks import EmptyWebhookSecretError, Webhook

from webhook_service.config.model import Connection
from webhook_service.model.events import MediaRef, MessageEvent, StatusEvent
from webhook_service.model.statuses import CANONICAL
from webhook_service.providers.base import ProviderAdapter, VerificationFailed, WebhookRequest
from webhook_service.providers.fields import as_utc, invalid_payload
from webhook_service.providers.signatures import check_timestamp, constant_time_equal, decode_base64, require_header

SECRET_PREFIX = "whsec_"


class _Payload(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="allow")


class _Attachment(_Payload):
    url: str = Field(min_length=1, max_length=4096)
    content_type: str | None = Field(default=None, alias="contentType", max_length=255)
    name: str | None = Field(default=None, max_length=255)
    size: int | None = Field(default=None, ge=0)


class _Message(_Payload):
    provider_message_id: str = Field(alias="providerMessageId", min_length=1, max_length=255)
    from_: str | None = Field(default=None, alias="from", max_length=64)
    to: list[str] = Field(default_factory=list, max_length=100)
    text: str | None = None
    subject: str | None = None
    attachments: list[_Attachment] = Field(default_factory=list, max_length=20)
    occurred_at: datetime | None = Field(default=None, alias="occurredAt")


class _Status(_Payload):
    provider_message_id: str = Field(alias="providerMessageId", min_length=1, max_length=255)
    status: str
    provider_status: str | None = Field(default=None, alias="providerStatus", max_length=64)
    error_code: str | None = Field(default=None, alias="errorCode", max_length=64)
    error_message: str | None = Field(default=None, alias="errorMessage")
    occurred_at: datetime | None = Field(default=None, alias="occurredAt")
    from_: str | None = Field(default=None, alias="from", max_length=64)
    to: list[str] = Field(default_factory=list, max_length=100)

    @field_validator("status")
    @classmethod
    def _canonical(cls, value: str) -> str:
        if value not in CANONICAL:
            raise ValueError(f"unknown status {value!r}; use one of {sorted(CANONICAL)}")
        return value


class _Envelope(_Payload):
    type: Literal["message.received", "message.sent", "message.status"]
    data: dict


class StandardAdapter(ProviderAdapter):
    name = "standard"
    timestamp_tolerance = 300

    def verify(self, request: WebhookRequest, connection) -> None:
        webhook_id = require_header(request, "webhook-id", max_length=256)
        timestamp = require_header(request, "webhook-timestamp", max_length=32)
        signatures = require_header(request, "webhook-signature", max_length=4096)
        check_timestamp(timestamp, request, self.tolerance(connection), "webhook-timestamp")
        try:
            body = request.body.decode("utf-8")
        except UnicodeDecodeError:
            raise VerificationFailed(
                "invalid_signature", "body is not UTF-8, so it cannot be the signed content"
            ) from None
        offered = []
        for item in signatures.split(" "):
            version, _, signature = item.partition(",")
            if version == "v1" and signature:
                offered.append(decode_base64(signature, "webhook-signature"))
        if not offered:
            raise VerificationFailed("malformed_signature", "webhook-signature has no v1 signature")
        signed_at = datetime.fromtimestamp(int(timestamp), UTC)
        for secret in connection.secrets:
            try:
                expected = Webhook(secret).sign(msg_id=webhook_id, timestamp=signed_at, data=body)
            except (EmptyWebhookSecretError, ValueError):
                continue  # a secret that is not whsec_/base64 can match nothing; others may
            expected_bytes = decode_base64(expected.split(",", 1)[1], "computed signature")
            if any(constant_time_equal(expected_bytes, candidate) for candidate in offered):
                return
        raise VerificationFailed("invalid_signature", "no webhook-signature matches a configured secret")

    def validate_secrets(self, connection: Connection) -> str | None:
        for index, secret in enumerate(connection.secrets):
            if not _key(secret):
                return f"secrets[{index}]: not a Standard Webhooks secret (whsec_ and the base64 of the key)"
        return None

    def parse(self, request: WebhookRequest, connection) -> list:
        try:
            envelope = _Envelope.model_validate(request.json_object())
            if envelope.type == "message.status":
                status = _Status.model_validate(envelope.data)
                return [
                    StatusEvent(
                        provider_message_id=status.provider_message_id,
                        status=status.status,
                        provider_status=status.provider_status or status.status,
                        occurred_at=as_utc(status.occurred_at),
                        error_code=status.error_code,
                        error_message=status.error_message,
                        event_id=request.headers.get("webhook-id"),
                        from_=status.from_,
                        to=tuple(status.to),
                    )
                ]
            message = _Message.model_validate(envelope.data)
        except ValidationError as error:
            raise invalid_payload(error) from None
        return [
            MessageEvent(
                provider_message_id=message.provider_message_id,
                direction="inbound" if envelope.type == "message.received" else "outbound",
                from_=message.from_,
                to=tuple(message.to),
                text=message.text,
                subject=message.subject,
                media=tuple(
                    MediaRef(url=a.url, content_type=a.content_type, name=a.name, size=a.size)
                    for a in message.attachments
                ),
                occurred_at=as_utc(message.occurred_at),
            )
        ]


def _key(secret: str) -> bytes:
    """The key a secret holds as the standardwebhooks library reads it, b"" when it holds none. The
    library takes it with or without "whsec_" and with or without base64's padding, but decodes the rest
    leniently: a character outside the base64 alphabet (url-safe base64's "-" and "_", a space) is
    skipped, and it would sign with a key other than the one written. So the rest is decoded strictly
    here; the library raises only for an empty key and for a length base64 cannot have."""
    encoded = secret.removeprefix(SECRET_PREFIX)
    try:
        return base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError):
        return b""
