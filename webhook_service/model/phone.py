"""Phone numbers: E.164 normalization for storage, masking for logs."""

from __future__ import annotations

import functools

import phonenumbers

DEFAULT_REGION = "US"
# No address (phone number, short code, alphanumeric sender) is longer.
MAX_ADDRESS_LENGTH = 64


def normalize_e164(value: str | None, region: str = DEFAULT_REGION) -> str | None:
    """The number in E.164 form, or None when `value` is not a phone number."""
    if not value or len(value) > MAX_ADDRESS_LENGTH:
        return None  # no phone number is that long; and the cache below must not keep huge keys
    return _normalize_e164(value, region)


@functools.lru_cache(maxsize=8192)
def _normalize_e164(value: str, region: str) -> str | None:
    """(Cached: the same few numbers, a tenant's own above all, appear in message after message, and
    parsing is costly.)

    `is_possible_number` rather than `is_valid_number`: validity depends on numbering-plan metadata
    that lags reality (and rejects the 555 numbers used in every example), while a provider that
    delivered a message to a number has already proven it exists.
    """
    text = value.strip()
    candidates = [text]
    digits = text.lstrip("+")
    if not text.startswith("+") and digits.isdigit() and len(digits) > 10:
        # "16461234567" (ProTexting) or "31612345678" (Vonage msisdn): international without the "+".
        candidates.append("+" + digits)
    for candidate in candidates:
        try:
            parsed = phonenumbers.parse(candidate, region)
        except phonenumbers.NumberParseException:
            continue
        if phonenumbers.is_possible_number(parsed):
            return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    return None


def normalize_address(value: str | None, region: str = DEFAULT_REGION) -> str | None:
    """A sender or recipient as we store it: E.164 when it is a phone number, otherwise the provider's
    own value trimmed (short codes such as "12345" and alphanumeric sender ids are real addresses
    that must not be dropped; anything past 64 characters is not an address, and the raw request
    keeps it whole)."""
    if value is None:
        return None
    text = str(value).strip()
    if not text:
        return None
    return normalize_e164(text, region) or text[:MAX_ADDRESS_LENGTH]


def mask(value: str | None) -> str | None:
    """A form safe for logs: enough to correlate ("+15*******67"), not enough to identify."""
    if not value:
        return value
    if len(value) <= 4:
        return "*" * len(value)
    keep_head = 3 if value.startswith("+") else 2
    return value[:keep_head] + "*" * (len(value) - keep_head - 2) + value[-2:]
