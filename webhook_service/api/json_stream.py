"""A request body as ijson's C backend (yajl) should read it: raw line breaks made harmless, integers
too long to convert refused before the parser meets them, and read sizes that keep both memory and
time low. Everything here works on the raw bytes, chunk by chunk, without parsing the JSON itself."""

from __future__ import annotations

import re
from typing import IO

from webhook_service.api.errors import ApiError

SMALL_READ_BYTES = 16 * 1024
LARGE_READ_BYTES = 1024 * 1024
# Python's default limit for converting decimal text to int (sys.get_int_max_str_digits()). ijson 3.6
# (yajl2_c) turns a longer integer into a ValueError, and into a SystemError or a segmentation fault of
# the whole process when the number spans two reads: such numbers must never reach it.
MAX_INTEGER_DIGITS = 4300

_LINE_BREAKS_TO_SPACES = bytes.maketrans(b"\r\n", b"  ")
# Digits become "1" and every other byte "0", so runs of digits can be measured with bytes' own searches.
_DIGITS_AS_ONES = bytes(0x31 if 0x30 <= byte <= 0x39 else 0x30 for byte in range(256))
_TOO_MANY_DIGITS = b"1" * (MAX_INTEGER_DIGITS + 1)
# A backslash and the byte it escapes; blanked out, an escaped quote can no longer end a string.
_ESCAPE_SEQUENCE = re.compile(rb"\\.", re.DOTALL)


class JsonBodyStream:
    """Wraps the request body for ijson.basic_parse; call it with any buf_size, it picks its own.

    - Raw CR and LF bytes become spaces. Seed 001's curl example puts `base64` output into a JSON string
      by shell substitution; GNU base64 wraps at 76 columns, so the string holds raw line breaks, which
      strict JSON forbids. Raw CR/LF bytes are never valid inside a JSON string and are insignificant
      whitespace outside one, so no valid document changes meaning; a space rather than nothing keeps
      tokens apart (`[1\\n2]` stays invalid instead of becoming [12]). Escaped line breaks ("\\r\\n")
      are untouched and still reach the fields, where a file name refuses them.
    - An integer longer than MAX_INTEGER_DIGITS is refused with a 400 before ijson sees it.
    - Read sizes: ijson turns each read into a list of all the events in it, held at once, and an array
      of byte values makes an event (some 70 bytes) per byte of the file, so 16 KiB reads keep that list
      near 250 KB. But yajl rescans a token that spans reads from its start on every read, so one long
      string (the base64 form) costs time in its length squared over the read size: an 8 MB string
      takes 1.6 s in 16 KiB reads, 0.04 s in 1 MiB reads. So reads start small and double, up to 1 MiB,
      while the data holds no quote and no comma, which is to say while it is the inside of one long
      token; a quote or a comma makes them small again (only the read that ends a long string can
      still be large).
    """

    def __init__(self, stream: IO[bytes]):
        self._stream = stream
        self._size = SMALL_READ_BYTES
        self._integers = _IntegerLengthGuard()

    def read(self, size: int = -1) -> bytes:
        if size == 0:
            # ijson asks for nothing to learn the stream's type; werkzeug's LimitedStream would take an
            # empty read for a client that disconnected.
            return b""
        chunk = self._stream.read(self._size).translate(_LINE_BREAKS_TO_SPACES)
        self._integers.check(chunk)
        if b'"' in chunk or b"," in chunk:
            self._size = SMALL_READ_BYTES
        else:
            self._size = min(2 * self._size, LARGE_READ_BYTES)
        return chunk


class _IntegerLengthGuard:
    """Refuses a run of more than MAX_INTEGER_DIGITS digits outside JSON strings, across chunks. Inside
    strings digits are only text (base64 has runs of them), so the guard follows string boundaries, in
    bulk: escape sequences are blanked out first (an escaped quote ends nothing), then every remaining
    quote opens or closes a string. Each step is one pass of C code over the chunk, so a body made of
    quotes and backslashes costs no more to check than any other."""

    def __init__(self) -> None:
        self._in_string = False
        self._backslash = b""  # a backslash that ended the previous chunk: it escapes this one's first byte
        self._digits = 0  # length of the digit run the previous chunk ended with, outside strings

    def check(self, chunk: bytes) -> None:
        text = _ESCAPE_SEQUENCE.sub(b"__", self._backslash + chunk)
        self._backslash = b"\\" if text.endswith(b"\\") else b""
        parts = text.split(b'"')  # parts alternate between outside and inside strings
        started_outside = not self._in_string
        outside = parts[0::2] if started_outside else parts[1::2]
        if len(parts) % 2 == 0:
            self._in_string = not self._in_string
        digits = b'"'.join(outside).translate(_DIGITS_AS_ONES)
        leading = len(digits) - len(digits.lstrip(b"1")) if started_outside else 0
        if self._digits + leading > MAX_INTEGER_DIGITS or _TOO_MANY_DIGITS in digits:
            raise ApiError(400, "invalid_body", f"The body holds a number longer than {MAX_INTEGER_DIGITS} digits.")
        if self._in_string:
            self._digits = 0
        elif len(parts) == 1 and leading == len(digits):
            self._digits += leading
        else:
            self._digits = len(digits) - len(digits.rstrip(b"1"))
