"""Reading an upload request (POST /api/v1/media) into a file on disk plus the fields that came with it.

Three body shapes are accepted:
- seed 001's JSON `{phoneNumber, fileName, contentType, data, tenantId}`, with `data` a base64 string
  (C#'s serializer writes byte[] that way) or an array of byte values (seed 001's Python and Node);
- seed 000's JSON `{phoneNumberId, fileName, mimeType, content}`, `content` in either form;
- multipart/form-data with the same field names and the file in a part named `file` (curl -F).

JSON is parsed as a stream (ijson) and the file's bytes go to disk in chunks: a 5 MiB file sent as an
array of byte values is some 25 MB of JSON, which is never held in memory, and reading stops as soon
as the decoded file passes its size limit. A base64 string reaches us whole (one copy, bounded by the
request cap) and is decoded in slices. Nothing here judges the fields or the file; that is the
caller's job once the body is read.
"""

from __future__ import annotations

import binascii
import decimal
import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import ijson
from werkzeug.datastructures import FileStorage, MultiDict

from webhook_service.api.errors import ApiError
from webhook_service.api.json_stream import SMALL_READ_BYTES, JsonBodyStream
from webhook_service.media import scratch
from webhook_service.media.validation import CONVERT_INPUT_FACTOR, MediaPolicy, too_large_rejection

# Text fields of both documented shapes; anything else in a body is ignored.
TEXT_FIELDS = ("phoneNumber", "phoneNumberId", "fileName", "contentType", "mimeType", "tenantId")
# The file: `data` in seed 001, `content` in seed 000, `file` as a multipart part.
JSON_FILE_FIELDS = ("data", "content")
MULTIPART_FILE_PARTS = ("file", "data", "content")
CONVERT_FIELD = "convert"


# The largest JSON text per file byte: seed 001's array form as Python's json.dumps writes it, "255, ".
# Base64 takes 4/3 characters per byte (a little more when wrapped into lines), multipart about one.
_ARRAY_CHARACTERS_PER_BYTE = 5
# Room for the other fields, a data: URI prefix and the multipart framing.
_BODY_SLACK_BYTES = 64 * 1024

_MULTIPART_READ_BYTES = 64 * 1024
# Bytes of an array are gathered to this many before a write.
_WRITE_CHUNK_BYTES = 64 * 1024
# Base64 text is decoded in slices of this many characters.
_BASE64_SLICE_CHARS = 1024 * 1024
_BASE64_IGNORED = b" \t\r\n\f\v"  # GNU base64 wraps its output at 76 columns
_DATA_URI_PREFIX = re.compile(r"data:(?P<type>[^,;]*)(?:;[^,;]*)*;base64,", re.IGNORECASE)
_DATA_URI_SCAN_CHARS = 1024

# The answer to a string that is not text, whether sent as bytes that are not UTF-8 or as the escape of
# a lone surrogate: neither can be a file name, a phone number or any other field.
INVALID_TEXT = "The body is not valid JSON (a string is not valid UTF-8 text)."

_TRUE_WORDS = frozenset({"true", "1", "yes", "on"})
_FALSE_WORDS = frozenset({"false", "0", "no", "off", ""})


@dataclass(frozen=True)
class SizeLimits:
    """How large the decoded file may be: `plain` normally, `converting` when the client asked for
    conversion (large images are then scaled down to fit `plain`)."""

    plain: int
    converting: int

    @classmethod
    def for_policy(cls, policy: MediaPolicy) -> SizeLimits:
        return cls(plain=policy.max_bytes, converting=CONVERT_INPUT_FACTOR * policy.max_bytes)

    def file_limit(self, convert: bool) -> int:
        return self.converting if convert else self.plain


@dataclass
class UploadBody:
    """What the body held. `fields` has the text fields that were present (None for a JSON null)."""

    fields: dict[str, str | None] = field(default_factory=dict)
    convert: bool = False
    has_file: bool = False
    # "base64", "bytes" (an array of byte values) or "multipart": for logs and metrics.
    encoding: str | None = None
    # The media type of a `data:<type>;base64,` prefix, a declared type of last resort.
    data_uri_type: str | None = None
    size: int = 0
    sha256: str | None = None


def max_body_bytes(file_limit: int) -> int:
    """The request size cap for a file of up to `file_limit` bytes: its array form at 5 characters a
    byte plus 64 KiB. For the 5 MiB default that is 26,279,936 bytes (about 25 MiB); with conversion,
    whose sources may be 20 MiB, 104,923,136 bytes (about 100 MiB)."""
    return file_limit * _ARRAY_CHARACTERS_PER_BYTE + _BODY_SLACK_BYTES


def too_large(limit: int) -> ApiError:
    """The 413 for a file over `limit`, in the media validation's own words ("Media file exceeds maximum
    size of 5MB", as seed 001 documents it): its helper is borrowed so the two can never disagree."""
    return ApiError(413, "payload_too_large", too_large_rejection(limit).message)


def parse_flag(name: str, value: str) -> bool:
    """A yes/no setting given as text (a query parameter or a form field)."""
    word = value.strip().lower()
    if word in _TRUE_WORDS:
        return True
    if word in _FALSE_WORDS:
        return False
    raise ApiError(400, "invalid_field", f"{name} must be true or false.")


# JSON ------------------------------------------------------------------------------------------------


def read_json_upload(stream: IO[bytes], destination: Path, *, limits: SizeLimits, convert: bool) -> UploadBody:
    """Parse a JSON upload from `stream`, writing the file to `destination`. `convert` is what the query
    string asked for; a `convert` field in the body counts too, and raises the size limit for the file
    when it comes before the file's field (the file is written as it streams by)."""
    events = ijson.basic_parse(JsonBodyStream(stream), use_float=False, buf_size=SMALL_READ_BYTES)
    reader = _JsonUploadReader(events, destination, limits, UploadBody(convert=convert))
    try:
        return reader.read()
    except ijson.JSONError as error:
        raise ApiError(400, "invalid_body", f"The body is not valid JSON ({_first_line(error)}).") from None
    except UnicodeDecodeError:
        # yajl checks UTF-8 only loosely: an encoded surrogate (ED A0 80), an overlong form or a code point
        # past U+10FFFF passes it, and so does the escape of a lone low surrogate ("\udfff"), which yajl
        # writes as ED BF BF; ijson's decoding of the string (a value or a member's name) then fails.
        raise ApiError(400, "invalid_body", INVALID_TEXT) from None
    except decimal.InvalidOperation:
        # A number whose exponent is past what a Decimal holds (1e99999999999999999999), wherever it is:
        # ijson converts every number it meets, also those of members that are skipped.
        raise ApiError(400, "invalid_body", "The body holds a number out of range.") from None


def _first_line(error: Exception) -> str:
    detail = error.args[0] if error.args else ""
    if isinstance(detail, bytes):
        detail = detail.decode("utf-8", "replace")
    return str(detail).strip().splitlines()[0] if str(detail).strip() else "incomplete"


class _JsonUploadReader:
    def __init__(self, events: Iterator[tuple[str, object]], destination: Path, limits: SizeLimits, body: UploadBody):
        self._events = events
        self._destination = destination
        self._limits = limits
        self._body = body
        self._seen: set[str] = set()

    def read(self) -> UploadBody:
        event, _ = self._next()
        if event != "start_map":
            raise ApiError(400, "invalid_body", "The body must be a JSON object.")
        while True:
            event, key = self._next()
            if event == "end_map":
                break
            self._read_member(str(key))
        for _ in self._events:  # only whitespace may follow; the parser reports anything else
            pass
        return self._body

    def _next(self) -> tuple[str, object]:
        try:
            return next(self._events)
        except StopIteration:
            raise ApiError(400, "invalid_body", "The body ended before the JSON object did.") from None

    def _read_member(self, key: str) -> None:
        if key in TEXT_FIELDS or key in JSON_FILE_FIELDS or key == CONVERT_FIELD:
            if key in self._seen:
                raise ApiError(400, "invalid_body", f"{key} appears more than once.")
            self._seen.add(key)
        if key in JSON_FILE_FIELDS:
            self._read_file(key)
        elif key in TEXT_FIELDS:
            self._body.fields[key] = self._text(key)
        elif key == CONVERT_FIELD:
            self._body.convert = self._flag(key) or self._body.convert
        else:
            self._skip_value()

    def _text(self, key: str) -> str | None:
        event, value = self._next()
        if event == "string":
            return str(value)
        if event == "null":
            return None
        raise ApiError(400, "invalid_field", f"{key} must be a string.")

    def _flag(self, key: str) -> bool:
        event, value = self._next()
        if event == "boolean":
            return bool(value)
        if event == "null":
            return False
        raise ApiError(400, "invalid_field", f"{key} must be true or false.")

    def _skip_value(self) -> None:
        """Pass over an unknown member's value, however deeply nested."""
        depth = 0
        while True:
            event, _ = self._next()
            if event in ("start_map", "start_array"):
                depth += 1
            elif event in ("end_map", "end_array"):
                depth -= 1
            if depth == 0:
                return

    def _read_file(self, key: str) -> None:
        other = JSON_FILE_FIELDS[1 - JSON_FILE_FIELDS.index(key)]
        if other in self._seen:
            raise ApiError(400, "invalid_body", "Send the file in data or in content, not in both.")
        event, value = self._next()
        if event == "null":
            return
        limit = self._limits.file_limit(self._body.convert)
        with _FileWriter(self._destination, limit) as writer:
            if event == "string":
                self._body.encoding = "base64"
                self._body.data_uri_type = _write_base64(key, str(value), writer)
            elif event == "start_array":
                self._body.encoding = "bytes"
                self._write_byte_values(key, writer)
            else:
                raise ApiError(
                    400, "invalid_field", f"{key} must be a base64 string or an array of byte values (0-255)."
                )
        self._body.has_file = True
        self._body.size = writer.size
        self._body.sha256 = writer.sha256

    def _write_byte_values(self, key: str, writer: _FileWriter) -> None:
        """The array's numbers, each checked by bytearray.append itself: a fraction or a value outside
        0..255 raises. The loop is kept this small because it runs once per byte of the file; a whole
        number written with a fraction or an exponent (153.0, 1.53e2: a JSON Schema integer all the
        same) takes the slow path."""
        buffer = bytearray()
        for event, value in self._events:
            if event != "number":
                if event == "end_array":
                    writer.write(buffer)
                    return
                raise _invalid_byte(key)
            try:
                buffer.append(value)  # type: ignore[arg-type]
            except (TypeError, ValueError):
                buffer.append(_whole_byte(key, value))
            if len(buffer) >= _WRITE_CHUNK_BYTES:
                writer.write(buffer)
                buffer.clear()
        raise ApiError(400, "invalid_body", "The body ended inside the array of byte values.")


def _whole_byte(key: str, value: object) -> int:
    """A byte value ijson read as a Decimal (it had a fraction or an exponent), if it is a whole one."""
    if (
        isinstance(value, decimal.Decimal)
        and value.is_finite()
        and value == value.to_integral_value()
        and 0 <= value <= 255
    ):
        return int(value)
    raise _invalid_byte(key)


def _invalid_byte(key: str) -> ApiError:
    return ApiError(400, "invalid_byte", f"{key} must hold only whole numbers from 0 to 255.")


def _write_base64(key: str, text: str, writer: _FileWriter) -> str | None:
    """Decode base64 `text` into `writer`, a slice at a time. Accepts a `data:<type>;base64,` prefix
    (returning its type), whitespace and line breaks anywhere, and missing `=` padding at the end;
    refuses anything else that is not the standard base64 alphabet."""
    start = len(text) - len(text.lstrip())
    data_uri_type = None
    if text[start : start + 5].lower() == "data:":
        prefix = _DATA_URI_PREFIX.match(text[start : start + _DATA_URI_SCAN_CHARS])
        if prefix is None:
            raise ApiError(
                400, "invalid_base64", f"{key}: only base64 data: URIs are accepted (data:<type>;base64,...)."
            )
        data_uri_type = prefix["type"].strip() or None
        start += prefix.end()
    pending = b""
    padded = False
    for offset in range(start, len(text), _BASE64_SLICE_CHARS):
        try:
            piece = text[offset : offset + _BASE64_SLICE_CHARS].encode("ascii")
        except UnicodeEncodeError:
            raise _invalid_base64(key) from None
        pending += piece.translate(None, _BASE64_IGNORED)
        whole = len(pending) - len(pending) % 4
        if whole:
            if padded:  # more data after a padded end: two encodings glued together
                raise _invalid_base64(key)
            writer.write(_decode_base64(key, pending[:whole]))
            padded = pending[whole - 1 : whole] == b"="
            pending = pending[whole:]
    if pending:
        if padded or len(pending) == 1:
            raise _invalid_base64(key)
        writer.write(_decode_base64(key, pending + b"=" * (4 - len(pending))))
    return data_uri_type


def _decode_base64(key: str, encoded: bytes) -> bytes:
    try:
        return binascii.a2b_base64(encoded, strict_mode=True)
    except binascii.Error:
        raise _invalid_base64(key) from None


def _invalid_base64(key: str) -> ApiError:
    return ApiError(400, "invalid_base64", f"{key} is not valid base64.")


# Multipart -------------------------------------------------------------------------------------------


def read_multipart_upload(
    form: MultiDict[str, str],
    files: MultiDict[str, FileStorage],
    destination: Path,
    *,
    limits: SizeLimits,
    convert: bool,
) -> UploadBody:
    """Take a multipart upload apart (werkzeug has already spooled the file part to disk). A file part's
    own name and Content-Type stand in for fileName and contentType when those fields are absent."""
    body = UploadBody(encoding="multipart")
    for name in (*TEXT_FIELDS, CONVERT_FIELD):
        values = form.getlist(name)
        if len(values) > 1:
            raise ApiError(400, "invalid_body", f"{name} appears more than once.")
        if values and name == CONVERT_FIELD:
            body.convert = parse_flag(name, values[0])
        elif values and values[0]:
            # A form sends its blank fields as empty values: one left blank is one left out.
            body.fields[name] = values[0]
    body.convert = body.convert or convert
    parts = [part for name in MULTIPART_FILE_PARTS for part in files.getlist(name)]
    if len(parts) > 1:
        raise ApiError(400, "invalid_body", "Send exactly one file part, named file.")
    if not parts:
        return body
    part = parts[0]
    with _FileWriter(destination, limits.file_limit(body.convert)) as writer:
        while chunk := part.stream.read(_MULTIPART_READ_BYTES):
            writer.write(chunk)
    body.has_file = True
    body.size = writer.size
    body.sha256 = writer.sha256
    if body.fields.get("fileName") is None and part.filename:
        body.fields["fileName"] = part.filename
    if not (body.fields.get("contentType") or body.fields.get("mimeType")) and part.mimetype:
        body.fields["contentType"] = part.mimetype
    return body


# Writing ---------------------------------------------------------------------------------------------


class _FileWriter:
    """Writes the decoded file, counting and hashing it, and refuses it with a 413 the moment it passes
    `limit` (exactly the limit passes)."""

    def __init__(self, path: Path, limit: int):
        self._path = path
        self._limit = limit
        self._digest = hashlib.sha256()
        self.size = 0

    def __enter__(self) -> _FileWriter:
        # A scratch file: a full disk is ScratchSpaceUnavailable, answered 503 like any storage outage.
        self._file = scratch.create(self._path)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._file.close()

    def write(self, data: bytes | bytearray) -> None:
        self.size += len(data)
        if self.size > self._limit:
            raise too_large(self._limit)
        self._digest.update(data)
        self._file.write(data)

    @property
    def sha256(self) -> str:
        return self._digest.hexdigest()
