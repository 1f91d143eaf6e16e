"""How a spooled webhook request is written in a spool file, and how the file is read back.

Each file of the spool is a header (a magic line, a random generation id and, since format 2, a random
key) followed by records. A record is framed so that a record cut off by a crash, or bytes that were
never a record, are recognised as such:

    magic "WSR2" | payload length (4 bytes, big-endian) | MAC (16 bytes) | payload
    MAC = HMAC-SHA256 under the file's key of the magic, the length and the payload, its first 16 bytes
    payload = metadata length (4 bytes) | metadata (JSON, UTF-8) | body (the request's bytes)

The reader checks the magic, that the length fits in what was written, and the MAC; anything else is a
damaged region, which ends where the next record that checks out begins (writers append after a torn
record, so good records follow it). The metadata is the request as it would be stored (credentials
already redacted, see redaction.py), with the connection it came on and its arrival time.

Why a keyed check, not a checksum: the bytes past a torn record may be a request's body, which its
sender chose. A body that holds a whole record of its own (one that names another connection, another
tenant) and is cut off by a crash right after it would be read, past the damage, as a request that was
verified and acknowledged. A CRC is no secret, its sender computes it as well as we do; a MAC needs a
key it never sees: drawn for each file when its header is written, it is only ever on this host's disk
(never logged; the generation id, which is, is another value).

Files of format 1 (header "WHSPOOL1", records "WSR1" | length | CRC32 of the payload | payload), which
earlier versions wrote, are still read so that what they spooled drains after an upgrade; nothing writes
them any more.

Looking for that next record, the reader tries each record magic in the damaged bytes: a candidate whose
length is larger than any record the service writes (`largest_record`) is no record, and is passed
without reading it, so that a body full of "WSR2    " (a length of 539 MB) costs nothing, where reading
and checking each of them to the end of a large spool took minutes.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import mmap
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from webhook_service.intake.message_store import RawRequestRecord

FILE_MAGIC = b"WHSPOOL2"
FILE_MAGIC_V1 = b"WHSPOOL1"  # earlier versions' files: read, never written
GENERATION_BYTES = 16
KEY_BYTES = 32
FILE_HEADER_BYTES = len(FILE_MAGIC) + GENERATION_BYTES + KEY_BYTES
FILE_HEADER_BYTES_V1 = len(FILE_MAGIC_V1) + GENERATION_BYTES

RECORD_MAGIC = b"WSR2"
RECORD_MAGIC_V1 = b"WSR1"
MAC_BYTES = 16
_RECORD_HEADER = struct.Struct(f">4sI{MAC_BYTES}s")  # magic, payload length, MAC
_RECORD_HEADER_V1 = struct.Struct(">4sII")  # magic, payload length, CRC32 of the payload
_METADATA_LENGTH = struct.Struct(">I")
_PAYLOAD_LENGTH = struct.Struct(">I")  # as the record header has it, for its MAC
RECORD_HEADER_BYTES = _RECORD_HEADER.size

# The largest request head the web server takes, with gunicorn's default limits (which gunicorn_config.py
# keeps): a request line of 4094 bytes and 100 header fields of 8190, each with its CRLF, and the blank
# line. At worst JSON writes each of its characters as six (a byte outside ASCII, which WSGI gives as a
# latin-1 character, as \u00XX); the metadata's other fields (the connection, times, the public base URL
# a connection may configure) take a few hundred bytes more, here 64 KiB.
LARGEST_HEAD_BYTES = 4094 + 100 * (8190 + 2) + 2
METADATA_ALLOWANCE_BYTES = 6 * LARGEST_HEAD_BYTES + 64 * 1024

# What the reader reads: the file mapped into memory (tests pass bytes).
Buffer = bytes | mmap.mmap


@dataclass(frozen=True)
class SpooledRequest:
    """A verified, parsed webhook request that could not be stored: enough to store it later through
    the intake's own path (which parses it again, but does not verify it again: its signature's
    timestamp would have expired by then, and it was checked before it was spooled)."""

    provider: str
    connection: str
    tenant: str  # the connection's tenant when it arrived, for the record if the connection is gone
    record: RawRequestRecord
    spooled_at: datetime


@dataclass(frozen=True)
class Frame:
    """A record that checks out, at [offset, end) in the file."""

    offset: int
    end: int
    payload: bytes


@dataclass(frozen=True)
class Damage:
    """Bytes at [offset, end) that are no record: a write a crash cut off, or garbage."""

    offset: int
    end: int


@dataclass(frozen=True)
class FileHeader:
    """What a spool file's header says: its generation id and its key (None: format 1, checked by CRC)."""

    generation: bytes
    key: bytes | None

    @property
    def size(self) -> int:
        return FILE_HEADER_BYTES if self.key is not None else FILE_HEADER_BYTES_V1


def file_header(generation: bytes, key: bytes) -> bytes:
    return FILE_MAGIC + generation + key


def read_header(header: bytes) -> FileHeader | None:
    """The header at the start of `header` (a file's first FILE_HEADER_BYTES or fewer), or None when it
    is not (all of) a header."""
    generation = bytes(header[len(FILE_MAGIC) : len(FILE_MAGIC) + GENERATION_BYTES])
    if header.startswith(FILE_MAGIC) and len(header) >= FILE_HEADER_BYTES:
        return FileHeader(generation, bytes(header[len(FILE_MAGIC) + GENERATION_BYTES : FILE_HEADER_BYTES]))
    if header.startswith(FILE_MAGIC_V1) and len(header) >= FILE_HEADER_BYTES_V1:
        return FileHeader(generation, None)
    return None


def header_cut_off(header: bytes) -> bool:
    """Whether `header` (a file's first bytes, no whole header) is the start of a header a crash cut off,
    rather than a file that is no spool file."""
    return any(
        magic.startswith(header[: len(magic)]) and len(header) < size
        for magic, size in ((FILE_MAGIC, FILE_HEADER_BYTES), (FILE_MAGIC_V1, FILE_HEADER_BYTES_V1))
    )


def largest_record(max_body_bytes: int) -> int:
    """The largest record the service writes when webhook bodies are capped at `max_body_bytes`."""
    return RECORD_HEADER_BYTES + _METADATA_LENGTH.size + METADATA_ALLOWANCE_BYTES + max_body_bytes


def encode(spooled: SpooledRequest, key: bytes) -> bytes:
    """The record of `spooled`, for a file whose key is `key`."""
    return frame(payload_of(spooled), key)


def payload_of(spooled: SpooledRequest) -> bytes:
    """What the record of `spooled` frames (RECORD_HEADER_BYTES more make the record)."""
    record = spooled.record
    metadata = json.dumps(
        {
            "provider": spooled.provider,
            "connection": spooled.connection,
            "tenant": spooled.tenant,
            "request_id": record.request_id,
            "method": record.method,
            "url": record.url,
            "headers": record.headers,
            "remote_addr": record.remote_addr,
            "received_at": record.received_at.isoformat(),
            "spooled_at": spooled.spooled_at.isoformat(),
        }
    ).encode()
    return _METADATA_LENGTH.pack(len(metadata)) + metadata + record.body


def frame(payload: bytes, key: bytes) -> bytes:
    """`payload` framed as a record of a file whose key is `key`."""
    length = _PAYLOAD_LENGTH.pack(len(payload))
    return _RECORD_HEADER.pack(RECORD_MAGIC, len(payload), _mac(key, length, payload)) + payload


def _mac(key: bytes, length: bytes, payload: Buffer | bytes) -> bytes:
    check = hmac.new(key, RECORD_MAGIC + length, hashlib.sha256)
    check.update(payload)
    return check.digest()[:MAC_BYTES]


def decode(payload: bytes) -> SpooledRequest:
    """The request a frame's payload holds; ValueError when it holds none (a record of another version)."""
    try:
        (length,) = _METADATA_LENGTH.unpack_from(payload)
        fields = json.loads(payload[_METADATA_LENGTH.size : _METADATA_LENGTH.size + length])
        body = payload[_METADATA_LENGTH.size + length :]
        record = RawRequestRecord(
            request_id=fields["request_id"],
            method=fields["method"],
            url=fields["url"],
            headers=[[str(name), str(value)] for name, value in fields["headers"]],
            body=bytes(body),
            remote_addr=fields["remote_addr"],
            received_at=datetime.fromisoformat(fields["received_at"]),
        )
        return SpooledRequest(
            provider=fields["provider"],
            connection=fields["connection"],
            tenant=fields["tenant"],
            record=record,
            spooled_at=datetime.fromisoformat(fields["spooled_at"]),
        )
    except (struct.error, KeyError, TypeError, ValueError) as error:
        raise ValueError(f"not a spooled request: {type(error).__name__}: {error}") from None


def arrival_time(payload: bytes) -> datetime | None:
    """A record's arrival time, read from its metadata only (None when it holds no request)."""
    try:
        (length,) = _METADATA_LENGTH.unpack_from(payload)
        fields = json.loads(payload[_METADATA_LENGTH.size : _METADATA_LENGTH.size + length])
        return datetime.fromisoformat(fields["received_at"])
    except (struct.error, KeyError, TypeError, ValueError):
        return None


def scan(data: Buffer, start: int, end: int, *, key: bytes | None, largest: int) -> Iterator[Frame | Damage]:
    """The records and damaged regions of data[start:end], in order, in a file whose key is `key` (None:
    format 1). `end` is where complete writes end (the file's size while no writer is appending), so a
    record that does not fit is damaged. Past damage, records are looked for no larger than `largest` (a
    `largest_record`); where one record ends, the next is read whatever its size (a record written under
    a larger body cap than today's)."""
    position = start
    while position < end:
        frame = frame_at(data, position, end, key)
        if frame is not None:
            yield frame
            position = frame.end
            continue
        resume = _next_frame(data, position + 1, end, key, largest)
        yield Damage(position, resume)
        position = resume


def frame_at(data: Buffer, position: int, end: int, key: bytes | None, largest: int | None = None) -> Frame | None:
    """The record at `position`, if one that checks out under `key` (None: format 1's CRC) and is no
    larger than `largest` begins there."""
    layout, magic = (_RECORD_HEADER, RECORD_MAGIC) if key is not None else (_RECORD_HEADER_V1, RECORD_MAGIC_V1)
    if end - position < layout.size:
        return None
    found, length, check = layout.unpack_from(data, position)
    payload_start = position + layout.size
    if found != magic or length > end - payload_start:
        return None
    if largest is not None and layout.size + length > largest:
        return None
    payload = bytes(data[payload_start : payload_start + length])
    if key is None:
        checks_out = zlib.crc32(payload) == check
    else:
        checks_out = hmac.compare_digest(_mac(key, _PAYLOAD_LENGTH.pack(length), payload), check)
    if not checks_out:
        return None
    return Frame(position, payload_start + length, payload)


def _next_frame(data: Buffer, position: int, end: int, key: bytes | None, largest: int) -> int:
    """Where the next record that checks out begins, at or after `position` (`end` when none does)."""
    magic = RECORD_MAGIC if key is not None else RECORD_MAGIC_V1
    while position < end:
        found = data.find(magic, position, end)
        if found < 0:
            return end
        if frame_at(data, found, end, key, largest) is not None:
            return found
        position = found + 1
    return end
