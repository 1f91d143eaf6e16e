"""Standard Webhooks signatures for deliveries, made with the official `standardwebhooks` library, and
the secrets they are made with."""

from __future__ import annotations

import base64
import secrets
from datetime import datetime

from standardwebhooks.webhooks import Webhook

# The same secrets the intake verifies Standard Webhooks senders with.
from webhook_service.providers.standard import SECRET_PREFIX

# Svix's secrets carry 24 random bytes; the specification asks for 24 to 64.
_SECRET_BYTES = 24


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(_SECRET_BYTES)).decode()


class Signer:
    """An endpoint's signatures during a turn, its keys decoded once: the current secret's, and while a
    rotation's day lasts the previous one's too (`v1,<current> v1,<previous>`, as the specification
    allows; a receiver accepts any one of them)."""

    def __init__(self, secret: str, previous: str | None = None, previous_expires_at: datetime | None = None):
        self._current = Webhook(secret)
        self._previous = Webhook(previous) if previous and previous_expires_at is not None else None
        self._previous_expires_at = previous_expires_at

    def header(self, webhook_id: str, timestamp: datetime, body: bytes) -> str:
        """The `webhook-signature` value for a delivery sent at `timestamp`."""
        # As text: the library's releases before 1.3 take only a str, and put bytes into the signed
        # content as their repr (b'...'), a signature no receiver verifies. A body is the JSON we
        # rendered, always UTF-8, and 1.3 signs a str as its UTF-8 bytes: the same signature.
        text = body.decode("utf-8")
        signature = self._current.sign(msg_id=webhook_id, timestamp=timestamp, data=text)
        expires = self._previous_expires_at
        if self._previous is None or expires is None or expires <= timestamp:
            return signature
        return f"{signature} {self._previous.sign(msg_id=webhook_id, timestamp=timestamp, data=text)}"
