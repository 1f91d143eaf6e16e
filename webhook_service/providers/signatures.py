"""Helpers for the adapters' verify(): reading signature headers, decoding them, comparing in constant
time, and holding a signed timestamp to its window. A failure is a VerificationFailed (answered 401)."""

from __future__ import annotations

import base64
import binascii
import hmac

from webhook_service.providers.base import VerificationFailed, WebhookRequest


def constant_time_equal(expected: bytes | str, received: bytes | str) -> bool:
    if isinstance(expected, str):
        expected = expected.encode()
    if isinstance(received, str):
        received = caller_bytes(received)
    return hmac.compare_digest(expected, received)


def caller_bytes(text: str) -> bytes:
    """Text from a request as bytes to sign, hash or compare: UTF-8, and never an exception. A JSON body
    can carry any lone surrogate ("\ud800"), which strict UTF-8 refuses to encode (surrogateescape covers
    only U+DC80..U+DCFF); surrogatepass encodes each as itself. No genuine sender signed such bytes, so a
    signature over them fails (401, quarantined) instead of raising; a key made of them stays distinct."""
    return text.encode("utf-8", "surrogatepass")


def require_header(request: WebhookRequest, name: str, max_length: int = 1024) -> str:
    value = request.headers.get(name)
    if not value:
        raise VerificationFailed("missing_signature", f"header {name} is missing")
    if len(value) > max_length:
        raise VerificationFailed("malformed_signature", f"header {name} is {len(value)} characters long")
    return value.strip()


def decode_base64(value: str, what: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise VerificationFailed("malformed_signature", f"{what} is not valid base64") from None


def check_timestamp(value: str, request: WebhookRequest, tolerance: int, what: str = "timestamp") -> int:
    """The signed unix timestamp, if within `tolerance` seconds of when the request arrived (both ways:
    a timestamp from the future is as suspicious as a stale one)."""
    try:
        timestamp = int(value.strip())
        age = request.received_at.timestamp() - timestamp
    except (ValueError, AttributeError, OverflowError):
        raise VerificationFailed("malformed_timestamp", f"{str(value)[:32]!r} is not a unix time ({what})") from None
    if abs(age) > tolerance:
        raise VerificationFailed(
            "stale_timestamp", f"{what} is {age:.0f} s from the arrival time (tolerance {tolerance} s)"
        )
    return timestamp
