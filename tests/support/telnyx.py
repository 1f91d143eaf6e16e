"""Building Telnyx requests the way Telnyx does: a JSON event signed with Ed25519 over
"{telnyx-timestamp}|{raw body}".

The signer is written from Telnyx's published description, independently of the adapter, and is pinned
by the vector of docs/providers.md in tests/providers/test_telnyx.py.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from collections.abc import Sequence

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

# The vector of docs/providers.md: its private seed signs the tests' requests, its public key is configured.
VECTOR_SEED = bytes(range(32))
VECTOR_PUBLIC_KEY = "A6EHv/POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg="
EVENT_ID = "0ccc7b54-4df3-4bca-a65a-3da1ecc777f0"


def seed_for(secret: str | None) -> bytes:
    """The vector seed, or (for the security suite's "wrong" secret) another key derived from a word."""
    return VECTOR_SEED if secret is None else hashlib.sha256(secret.encode()).digest()


def telnyx_headers(body: bytes, *, seed: bytes = VECTOR_SEED, timestamp: int | None = None) -> dict:
    timestamp = int(time.time()) if timestamp is None else timestamp
    signature = Ed25519PrivateKey.from_private_bytes(seed).sign(f"{timestamp}|".encode() + body)
    return {"telnyx-signature-ed25519": base64.b64encode(signature).decode(), "telnyx-timestamp": str(timestamp)}


def event_body(event_type: str, payload: dict, *, event_id: str = EVENT_ID) -> bytes:
    """An event envelope as Telnyx serializes it, occurring at 2026-01-02T03:04:05Z."""
    return json.dumps(
        {
            "data": {
                "event_type": event_type,
                "id": event_id,
                "occurred_at": "2026-01-02T03:04:05.000+00:00",
                "payload": payload,
                "record_type": "event",
            },
            "meta": {"attempt": 1, "delivered_to": "https://hooks.example.com/webhooks/telnyx/main"},
        }
    ).encode()


def message_payload(
    message_id: str,
    *,
    direction: str,
    sender: str,
    recipients: Sequence[tuple[str, str]],
    text: str | None = "Hello",
    subject: str | None = None,
    media: Sequence[dict] = (),
    cc: Sequence[str] = (),
    errors: Sequence[dict] = (),
    message_type: str = "SMS",
) -> dict:
    """A message record as it appears in `data.payload` (fields in Telnyx's order, extras included)."""
    return {
        "completed_at": None,
        "cost": None,
        "direction": direction,
        "encoding": "GSM-7",
        "errors": list(errors),
        "from": {"carrier": "T-Mobile USA", "line_type": "long_code", "phone_number": sender},
        "id": message_id,
        "media": list(media),
        "messaging_profile_id": "4000eba1-a0c0-4563-9925-b25e842a7cb6",
        "organization_id": "b448f9cc-a842-4784-98e9-03c1a5872950",
        "parts": 1,
        "received_at": "2026-01-02T03:04:00.000+00:00",
        "record_type": "message",
        "sent_at": None,
        "subject": subject,
        "tags": [],
        "text": text,
        "to": [
            {"carrier": "Telnyx", "line_type": "Wireless", "phone_number": number, "status": status}
            for number, status in recipients
        ],
        "cc": [
            {"carrier": "Telnyx", "line_type": "Wireless", "phone_number": number, "status": "delivered"}
            for number in cc
        ],
        "type": message_type,
        "valid_until": None,
        "webhook_failover_url": None,
        "webhook_url": "https://hooks.example.com/webhooks/telnyx/main",
    }


def post_telnyx(
    client, body: bytes, *, connection: str = "main", seed: bytes = VECTOR_SEED, timestamp: int | None = None
):
    return client.post(
        f"/webhooks/telnyx/{connection}",
        data=body,
        content_type="application/json",
        headers=telnyx_headers(body, seed=seed, timestamp=timestamp),
    )
