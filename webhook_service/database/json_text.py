"""JSON text for the database: the engines' JSON columns (`json_serializer`) and the intake's documents on
PostgreSQL (intake/postgres_batch.py).

orjson writes a webhook's JSON values in a tenth of the standard library's time (a webhook's document:
about 3 µs against 45), and a webhook writes several. It refuses a few values the standard library
writes (an integer beyond 64 bits, a string with an unpaired surrogate): those fall back to the standard
library as SQLAlchemy called it before (`json.dumps` with its defaults), so what was stored before is
stored still. Other differences: no spaces between items, and a float that is not a number is written
null (the standard library writes NaN, which is not JSON and PostgreSQL refuses).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import orjson

# Keys that are not strings written as strings, as the standard library does.
_OPTIONS = orjson.OPT_NON_STR_KEYS


def dumps(value: Any, default: Callable[[Any], Any] | None = None) -> str:
    """`value` as JSON text; `default` converts what JSON has no form for (as `json.dumps`'s)."""
    return dumps_utf8(value, default).decode()


def dumps_utf8(value: Any, default: Callable[[Any], Any] | None = None) -> bytes:
    """`dumps` as the UTF-8 bytes orjson writes, for a caller that sends them on as they are: decoded, a
    text with a character beyond U+FFFF (an emoji in a message) takes four bytes a character, and each
    copy and the driver's encoding back to UTF-8 cost more than orjson's writing."""
    try:
        return orjson.dumps(value, default=default, option=_OPTIONS)
    except TypeError:  # orjson.JSONEncodeError too
        # ASCII (the standard library escapes the rest), so also what a lone surrogate becomes.
        return json.dumps(value, default=default).encode()
