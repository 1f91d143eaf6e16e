"""Building Approved Contact webhooks the way this service assumes Approved Contact sends them:
X-AC-Signature = HMAC-SHA256(webhook secret, "{X-AC-Timestamp}.{raw body}"), hex (see the adapter's
docstring: the signed string is an assumption). Written independently of the adapter and pinned by the
self-computed vector in tests/providers/test_approvedcontact.py."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

AC_SECRET = "ac-webhook-secret"

# Seed 001, "Incoming MMS Webhook Payload", byte for byte.
SEED_001_INBOUND_MMS = b"""{
"messageId": "3fa85f64-5717-4562-b3fc-2c963f66afa6",
"from": "+15551234567",
"message": "Here's the photo you requested",
"attachments": [
{
"name": "photo.jpg",
"url": "https://storage.approvedcontact.com/attachments/xyz789/photo.jpg",
"contentType": "image/jpeg",
"size": 512000
}
]
}"""


def ac_signature(body: bytes, timestamp: int | str, secret: str = AC_SECRET, encoding: str = "hex") -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).digest()
    return digest.hex() if encoding == "hex" else base64.b64encode(digest).decode()


def ac_headers(
    body: bytes,
    *,
    secret: str = AC_SECRET,
    timestamp: int | None = None,
    event: str | None = "MessageReceived",
    encoding: str = "hex",
) -> dict:
    timestamp = int(time.time()) if timestamp is None else timestamp
    headers = {"X-AC-Timestamp": str(timestamp), "X-AC-Signature": ac_signature(body, timestamp, secret, encoding)}
    if event:
        headers["X-AC-WebhookEvent"] = event
    return headers


def status_body(message_id: str, status: str, **fields) -> bytes:
    return json.dumps({"messageId": message_id, "status": status, **fields}).encode()


def post_ac(client, body: bytes, *, connection: str = "main", event: str | None = "MessageReceived", **options):
    return client.post(
        f"/webhooks/approvedcontact/{connection}",
        data=body,
        headers=ac_headers(body, event=event, **options),
        content_type="application/json",
    )
