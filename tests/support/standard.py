"""Building Standard Webhooks requests the way a sender does (with the reference implementation)."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime

from standardwebhooks.webhooks import Webhook

from tests.fixtures.app import STANDARD_SECRET


def standard_headers(
    body: bytes, *, secret: str = STANDARD_SECRET, timestamp: int | None = None, webhook_id: str | None = None
) -> dict:
    timestamp = int(time.time()) if timestamp is None else timestamp
    webhook_id = webhook_id or f"msg_{uuid.uuid4().hex}"
    signed_at = datetime.fromtimestamp(timestamp, UTC)
    if secret == "wrong":
        secret = "whsec_" + "d3JvbmcgZmFrZSBzZWNyZXQgZm9yIHRlc3RzIQ=="
    signature = Webhook(secret).sign(msg_id=webhook_id, timestamp=signed_at, data=body.decode())
    return {"webhook-id": webhook_id, "webhook-timestamp": str(timestamp), "webhook-signature": signature}


def inbound_body(
    provider_message_id: str = "pm-1",
    *,
    text: str = "hello",
    attachments=(),
    sender: str = "+15550001111",
    to: tuple[str, ...] = ("+15551234567",),
) -> bytes:
    return json.dumps(
        {
            "type": "message.received",
            "data": {
                "providerMessageId": provider_message_id,
                "from": sender,
                "to": list(to),
                "text": text,
                "attachments": list(attachments),
            },
        }
    ).encode()


def status_body(
    provider_message_id: str,
    status: str,
    *,
    provider_status: str | None = None,
    occurred_at: str | None = None,
    error_code: str | None = None,
) -> bytes:
    return json.dumps(
        {
            "type": "message.status",
            "data": {
                "providerMessageId": provider_message_id,
                "status": status,
                "providerStatus": provider_status or status,
                "occurredAt": occurred_at,
                "errorCode": error_code,
            },
        }
    ).encode()


def post_standard(client, body: bytes, *, connection: str = "main", secret: str = STANDARD_SECRET, **header_options):
    headers = standard_headers(body, secret=secret, **header_options)
    return client.post(f"/webhooks/standard/{connection}", data=body, headers=headers, content_type="application/json")
