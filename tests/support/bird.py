"""Building Bird requests the way Bird does: a JSON envelope signed with
base64(HMAC-SHA256(key, "{timestamp}\\n{subscription URL}\\n" + sha256(body) as raw bytes)).

The signer is written from Bird's published description, independently of the adapter, and is pinned
by the vector of docs/providers.md in tests/providers/test_bird.py.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Sequence

# The key of the docs/providers.md vector doubles as the tests' configured signing key.
BIRD_SIGNING_KEY = "secureSigningKey"
PUBLIC_BASE_URL = "https://hooks.example.com"
CHANNEL_ID = "5f3e4c4a-2b8d-4f8e-9a61-0c2f1a6b9d10"


def webhook_url(connection: str = "main") -> str:
    return f"{PUBLIC_BASE_URL}/webhooks/bird/{connection}"


def bird_signature(body: bytes, *, url: str, timestamp: str, key: str = BIRD_SIGNING_KEY) -> str:
    signed = f"{timestamp}\n{url}\n".encode() + hashlib.sha256(body).digest()
    return base64.b64encode(hmac.new(key.encode(), signed, hashlib.sha256).digest()).decode()


def bird_headers(body: bytes, *, url: str, key: str = BIRD_SIGNING_KEY, timestamp: int | None = None) -> dict:
    timestamp_text = str(int(time.time()) if timestamp is None else timestamp)
    return {
        "messagebird-signature": bird_signature(body, url=url, timestamp=timestamp_text, key=key),
        "messagebird-request-timestamp": timestamp_text,
        "messagebird-request-id": str(uuid.uuid4()),
    }


def envelope(event: str, payload: dict) -> bytes:
    return json.dumps({"service": "channels", "event": event, "payload": payload}).encode()


def message(
    message_id: str,
    *,
    direction: str,
    status: str,
    body: dict | None,
    sender: str,
    recipients: Sequence[str],
    last_status_at: str = "2026-01-02T03:04:05.000Z",
    failure: dict | None = None,
) -> dict:
    """A message object as seed 002 describes it. Inbound: the sender is a contact and the receiver our
    connector; outbound: the sender is our connector and the receivers are contacts."""
    inbound = direction == "incoming"
    contacts = [
        {"id": str(uuid.uuid5(uuid.NAMESPACE_URL, number)), "identifierKey": "phonenumber", "identifierValue": number}
        for number in recipients
    ]
    connector = {
        "id": CHANNEL_ID,
        "identifierValue": recipients[0] if inbound else sender,
        "annotations": {"name": "SMS"},
        "types": ["sms"],
    }
    return {
        "id": message_id,
        "channelId": CHANNEL_ID,
        "sender": {
            "contact": {
                "id": str(uuid.uuid5(uuid.NAMESPACE_URL, sender)),
                "identifierKey": "phonenumber",
                "identifierValue": sender,
            }
        }
        if inbound
        else {"connector": connector},
        "receiver": {"connector": connector} if inbound else {"contacts": contacts},
        "meta": {},
        "reference": "",
        "parts": [{"platformReference": "pr-" + message_id}],
        "status": status,
        "reason": "",
        "direction": direction,
        "lastStatusAt": last_status_at,
        "createdAt": "2026-01-02T03:04:00.000Z",
        "updatedAt": last_status_at,
        "failure": failure,
        "body": body,
    }


def post_bird(client, body: bytes, *, connection: str = "main", timestamp: int | None = None):
    return client.post(
        f"/webhooks/bird/{connection}",
        data=body,
        content_type="application/json",
        headers=bird_headers(body, url=webhook_url(connection), timestamp=timestamp),
    )
