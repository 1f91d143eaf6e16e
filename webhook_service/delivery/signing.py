"""Standard Webhooks signatures for deliveries, made with the official `standardwebhooks` library, and
the secrets they are made with."""

from __future__ import annotations

import base64
import secrets
from collections.abc import Iterable
from datetime import datetime

from standardwebhooks.webhooks import Webhook

SECRET_PREFIX = "whsec_"
# Svix's secrets carry 24 random bytes; the specification asks for 24 to 64.
_SECRET_BYTES = 24


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(_SECRET_BYTES)).decode()


def signature_header(signing_secrets: Iterable[str], webhook_id: str, timestamp: datetime, body: bytes) -> str:
    """The `webhook-signature` value: one `v1,` signature per secret, separated by spaces, as the
    specification allows while a secret is being rotated (a receiver accepts any one of them)."""
    return " ".join(
        Webhook(secret).sign(msg_id=webhook_id, timestamp=timestamp, data=body) for secret in signing_secrets
    )
