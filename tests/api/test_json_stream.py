"""The request body as the JSON parser reads it (webhook_service.media.json_stream): integers too long
for ijson are refused before it sees them, wherever reads split them, and nothing inside strings is
mistaken for one."""

from __future__ import annotations

import io
import json

import pytest

from webhook_service.api.errors import ApiError
from webhook_service.api.json_stream import MAX_INTEGER_DIGITS, JsonBodyStream, _IntegerLengthGuard

LONGEST = "7" * MAX_INTEGER_DIGITS
TOO_LONG = "7" * (MAX_INTEGER_DIGITS + 1)

ACCEPTED = [
    '{"n": ' + LONGEST + "}",
    '{"s": "' + TOO_LONG + '"}',
    '{"s": "a\\"' + TOO_LONG + '"}',  # an escaped quote does not end the string
    '{"s": "\\\\\\"' + TOO_LONG + '"}',  # nor does one after an escaped backslash
    '{"a": [' + ", ".join([LONGEST] * 3) + "]}",
    '{"f": 1.' + "5" * 100 + "}",
]
REFUSED = [
    '{"n": ' + TOO_LONG + "}",
    '{"n": -' + TOO_LONG + "}",
    '{"s": "\\\\", "n": ' + TOO_LONG + "}",  # an escaped backslash, then the string really ends
    '{"a": [1, 2, ' + TOO_LONG + "]}",
    '{"f": 0.' + TOO_LONG + "}",
]


def check_in_pieces(document: str, piece: int) -> None:
    guard = _IntegerLengthGuard()
    raw = document.encode()
    for start in range(0, len(raw), piece):
        guard.check(raw[start : start + piece])


@pytest.mark.parametrize("piece", [1, 2, 3, 7, 4096, 1 << 20])
def test_split_anywhere_the_verdict_is_the_same(piece):
    for document in ACCEPTED:
        check_in_pieces(document, piece)
    for document in REFUSED:
        with pytest.raises(ApiError) as caught:
            check_in_pieces(document, piece)
        assert (caught.value.status, caught.value.code) == (400, "invalid_body")


def test_the_parser_never_meets_an_integer_it_cannot_convert():
    """ijson 3.6 raises ValueError for such an integer within one read, and crashes the process
    (a segmentation fault) when it spans two."""
    import ijson

    for digits in (MAX_INTEGER_DIGITS + 1, 100_000):
        body = io.BytesIO(b'{"x": ' + b"1" * digits + b"}")
        with pytest.raises(ApiError):
            list(ijson.basic_parse(JsonBodyStream(body), use_float=False))


def test_raw_line_breaks_become_spaces_and_escaped_ones_stay():
    body = io.BytesIO(b'{"a": "x\r\ny",\n"b": "\\r\\n"}')
    read = JsonBodyStream(body).read(100)
    assert read == b'{"a": "x  y", "b": "\\r\\n"}'
    assert json.loads(read) == {"a": "x  y", "b": "\r\n"}
