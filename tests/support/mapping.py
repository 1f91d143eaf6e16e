"""Connections of the declarative mapping adapter used by the tests, and a sender that signs the way
they say (written independently of the adapter)."""

from __future__ import annotations

import hashlib
import hmac
import time

MAPPING_SECRET = "mapping-hmac-secret"
MAPPING_TOKEN = "mapping-shared-token"

# "Acme", a provider with nested JSON or XML pushes and an HMAC over "{timestamp}.{body}".
ACME_OPTIONS = {
    "body_format": "auto",
    "fields": {
        "message_id": ["data.id", "data.message_id"],
        "from": "data.sender",
        "to": "data.recipients[]",
        "outbound_from": "data.origin",
        "outbound_to": "data.recipients[]",
        "text": "data.text",
        "subject": "data.subject",
        "media_url": "data.media[].url",
        "media_content_type": "data.media[].type",
        "media_name": "data.media[].filename",
        "media_size": "data.media[].bytes",
        "status": "data.state",
        "error_code": "data.error.code",
        "error_message": "data.error.detail",
        "occurred_at": "data.at",
        "event_id": "event_id",
        "extra": {"segments": "data.segments", "channel": "header:X-Acme-Channel"},
    },
    "event_kind": {
        "paths": ["event", "header:X-Acme-Event"],
        "inbound": ["message.in"],
        "outbound": ["message.out"],
        "status": ["message.dlr"],
    },
    "status_map": {"DELIVERED_TO_HANDSET": "delivered", "CARRIER_REJECTED": "undelivered"},
    "auth": {
        "kind": "hmac",
        "header": "X-Acme-Signature",
        "algorithm": "sha256",
        "encoding": "hex",
        "prefix": "v1=",
        "signed_content": "timestamp.body",
        "timestamp_header": "X-Acme-Timestamp",
    },
}

# A flat vocabulary that reads the same in JSON, form and XML; a shared token in the query string.
FLAT_OPTIONS = {
    "fields": {
        "message_id": "msg_id",
        "from": "from",
        "to": "to",
        "text": "text",
        "media_url": "media_url",
        "media_content_type": "media_type",
        "status": "status",
        "error_code": "err",
    },
    "auth": {"kind": "token", "query_parameter": "token"},
}


def acme_signature(body: bytes, timestamp: int | str, secret: str = MAPPING_SECRET) -> str:
    return "v1=" + hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def acme_headers(body: bytes, *, secret: str = MAPPING_SECRET, timestamp: int | None = None) -> dict:
    timestamp = int(time.time()) if timestamp is None else timestamp
    return {"X-Acme-Timestamp": str(timestamp), "X-Acme-Signature": acme_signature(body, timestamp, secret)}
