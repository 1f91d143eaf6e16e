"""Helpers for the adapters' parse(): reading fields and times out of a provider's body. A body that
cannot be read is a ParseFailed (answered 400); a field worth keeping a message over is read leniently."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from webhook_service.providers.base import ParseFailed, first_validation_error


def invalid_payload(error: ValidationError) -> ParseFailed:
    """A body that parsed but does not have the provider's shape."""
    where, message = first_validation_error(error)
    return ParseFailed("invalid_payload", f"{where or 'body'}: {message}")


def parse_time(value: Any) -> datetime | None:
    """Provider timestamps: ISO 8601 (with Z or offset) or unix seconds/milliseconds; None if absent or
    unreadable (a bad timestamp is not worth refusing a message over)."""
    if value in (None, ""):
        return None
    try:
        if isinstance(value, (int, float)) or (isinstance(value, str) and value.strip().isdigit()):
            number = float(value)
            if number > 1e11:  # milliseconds
                number /= 1000
            return datetime.fromtimestamp(number, UTC)
        text = str(value).strip().replace("Z", "+00:00").replace("z", "+00:00")
        parsed = datetime.fromisoformat(text)
    except (ValueError, OverflowError, OSError):
        return None
    return as_utc(parsed)


def as_utc(value: datetime | None) -> datetime | None:
    """`value` in UTC (a naive one is taken to be UTC already); None when absent, or when its offset
    moves it out of the years 1 to 9999 a datetime holds (0001-01-01T00:00:00+05:00 is in year 0 in UTC):
    such a time is unknown, like any other unreadable one, rather than an OverflowError for every
    caller to remember."""
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:
        return None


def field_text(fields: dict[str, Any], name: str, max_length: int | None = None) -> str | None:
    """A body parameter as text, None when absent or empty; ParseFailed when it has the wrong type
    (JSON bodies may carry numbers, never objects) or an impossible length."""
    value = fields.get(name)
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ParseFailed("invalid_payload", f"{name} must be a string, not {type(value).__name__}")
    text = str(value)
    if max_length is not None and len(text) > max_length:
        raise ParseFailed("invalid_payload", f"{name} is {len(text)} characters long (at most {max_length})")
    return text


def text_or_none(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, (dict, list)):
        return None
    text = str(value)
    return text if text != "" else None


def form_addresses(fields: dict[str, Any], max_length: int) -> tuple[str | None, tuple[str, ...]]:
    """The sender (`From`) and recipients (`To`) of a form-encoded message (Twilio's and Plivo's names)."""
    recipient = field_text(fields, "To", max_length)
    return field_text(fields, "From", max_length), (recipient,) if recipient else ()
