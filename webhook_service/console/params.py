"""Reading the console's query strings and forms: every value is checked, and a bad one is a 400 page
that names it (`BadParameter`), never a 500. An empty value is the same as an absent one."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import datetime

from webhook_service.database.tables import storable
from webhook_service.model.phone import normalize_address
from webhook_service.providers.fields import parse_time

MAX_TEXT = 255
# The URL converter of a row id: a larger number is no row (404), not a number the database refuses.
ROW_ID = "int(max=9223372036854775807)"
PAGE_SIZE = 50


def row_key(value: str) -> str:
    """A row's key as a URL's path gives it (a message, an attachment, an endpoint): at most 64 characters,
    and none that no database can store (PostgreSQL refuses NUL in text), so that an odd key finds no row
    (a 404) instead of failing the statement (a 500)."""
    return storable(value[:64])


class BadParameter(Exception):
    """A query or form value the console cannot use: answered 400 with this message."""


def text(values: Mapping[str, str], name: str, *, limit: int = MAX_TEXT) -> str | None:
    value = (values.get(name) or "").strip()
    if not value:
        return None
    if len(value) > limit:
        raise BadParameter(f"{name}: at most {limit} characters")
    return storable(value)


def choice(values: Mapping[str, str], name: str, allowed: Collection[str]) -> str | None:
    value = text(values, name)
    if value is not None and value not in allowed:
        raise BadParameter(f"{name}: use one of {', '.join(sorted(allowed))}")
    return value


def position(values: Mapping[str, str], name: str) -> int | None:
    """A page position or an id: digits only."""
    value = text(values, name, limit=18)
    if value is None:
        return None
    if not (value.isascii() and value.isdigit()):
        raise BadParameter(f"{name}: expected a whole number")
    return int(value)


def moment(values: Mapping[str, str], name: str) -> datetime | None:
    """ISO 8601 (with an offset, or Z; a datetime-local field's value is read as UTC) or unix seconds."""
    value = text(values, name, limit=64)
    if value is None:
        return None
    if len(value) == 16 and value[10] == "T":  # <input type="datetime-local">: minutes, no zone
        value += ":00Z"
    parsed = parse_time(value)
    if parsed is None:
        raise BadParameter(f"{name}: expected a time such as 2026-01-31T12:00:00Z")
    return parsed


def address(values: Mapping[str, str], name: str, region: str) -> str | None:
    """A phone number in any format, as it is stored (E.164); other addresses (short codes, names) as given."""
    value = text(values, name, limit=64)
    return None if value is None else normalize_address(value, region) or value


def flag(values: Mapping[str, str], name: str) -> bool:
    return (values.get(name) or "") in {"1", "on", "true", "yes"}


def ids(values: list[str], *, limit: int) -> list[int]:
    """Checked entry ids from a form's checkboxes, each once (in their order): an entry named twice is
    acted on once."""
    if len(values) > limit:
        raise BadParameter(f"at most {limit} entries at a time")
    checked = []
    for value in values:
        if not (value.isascii() and value.isdigit() and len(value) <= 18):
            raise BadParameter("ids: expected whole numbers")
        checked.append(int(value))
    return list(dict.fromkeys(checked))
