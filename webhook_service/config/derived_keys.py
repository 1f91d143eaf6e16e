"""Keys derived from the configured `secret_key`, one per purpose, so that nothing made with the key for one
use (a console session, a CSRF token, a sealed endpoint secret) passes for another."""

from __future__ import annotations

import hashlib
import hmac


def derived_key(secret_key: bytes, purpose: str) -> bytes:
    """A 32-byte key for `purpose` (HMAC-SHA256 of the purpose under `secret_key`)."""
    return hmac.new(secret_key, purpose.encode(), hashlib.sha256).digest()
