"""Blob keys. They are made by the service ("tenant/2026/11/21/<message-uuid>/0"), never taken from a
caller's file name, and checked by every store so a bad key can never address a path outside its
place, whatever the backend does with "..", "//" or odd characters."""

from __future__ import annotations

import re

MAX_KEY_LENGTH = 512
_SEGMENT = re.compile(r"[A-Za-z0-9._-]+")


def validate_key(key: str) -> str:
    """Return `key` unchanged if it is a valid blob key, else raise ValueError."""
    if not isinstance(key, str):
        raise ValueError(f"blob key must be a string, not {type(key).__name__}")
    if not key or len(key) > MAX_KEY_LENGTH:
        raise ValueError(f"blob key must be 1 to {MAX_KEY_LENGTH} characters long")
    for segment in key.split("/"):
        # fullmatch, not match with "$": "$" would accept a trailing newline.
        if not _SEGMENT.fullmatch(segment) or segment in {".", ".."}:
            raise ValueError(
                f"invalid blob key {key!r}: segments of [A-Za-z0-9._-] separated by '/', none empty, '.' or '..'"
            )
    return key


def normalize_prefix(prefix: str) -> str:
    """A store-wide key prefix ("media", "/media/") as it is joined to keys: "" or "media/"."""
    stripped = prefix.strip("/")
    if not stripped:
        return ""
    try:
        validate_key(stripped)
    except ValueError as error:
        raise ValueError(f"invalid prefix {prefix!r}: {error}") from None
    return stripped + "/"
