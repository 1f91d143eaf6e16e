"""How a spooled webhook request is written in a spool file, and how the file is read back.

Each file of the spool (a segment, or the one file earlier versions wrote) is a header (a magic line and a random generation id) followed by records. A record is framed
so that a record cut off by a crash, or bytes that were never a record, are recognised as such:

    magic "WSR1" | payload length (4 bytes, big-endian) | CRC32 of the payload (4 bytes) | payload
    payload = metadata length (4 bytes) | metadata (JSON, UTF-8) | body (the request's bytes)

The reader checks the magic, that the length fits in what was written, and the CRC; anything else is a
damaged region, which ends where the next record that checks out begins (writers append after a torn
record, so good records follow it). The metadata is the request as it would be stored (credentials
already redacted, see redaction.py), with the connection it came on and its arrival time.

Looking for that next record, the reader tries each "WSR1" in the damaged bytes, which may be a request's
body: a candidate whose length is larger than any record the service writes (`largest_record`) is no
record, and is passed without reading it, so that a body full of "WSR1    " (a length of 539 MB) costs
nothing, where reading and checksumming each of them to the end of a large spool took minutes.
"""

from __future__ import annotations

import json
import mmap
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from webhook_service.intake.message_store import RawRequestRecord

FILE_MAGIC = b"WHSPOOL1"
GENERATION_BYTES = 16
FILE_HEADER_BYTES = len(FILE_MAGIC) + GENERATION_BYTES

RECORD_MAGIC = b"WSR1"
_RECORD_HEADER = struct.Struct(">4sII")  # magic, payload length, CRC32 of the payload
_METADATA_LENGTH = struct.Struct(">I")
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


def file_header(generation: bytes) -> bytes:
    return FILE_MAGIC + generation


def generation_of(header: bytes) -> bytes | None:
    """The generation id a file header names, or None when it is not (all of) a header."""
    if len(header) < FILE_HEADER_BYTES or not header.startswith(FILE_MAGIC):
        return None
    return bytes(header[len(FILE_MAGIC) : FILE_HEADER_BYTES])


def largest_record(max_body_bytes: int) -> int:
    """The largest record the service writes when webhook bodies are capped at `max_body_bytes`."""
    return RECORD_HEADER_BYTES + _METADATA_LENGTH.size + METADATA_ALLOWANCE_BYTES + max_body_bytes


def encode(spooled: SpooledRequest) -> bytes:
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
    payload = _METADATA_LENGTH.pack(len(metadata)) + metadata + record.body
    return _RECORD_HEADER.pack(RECORD_MAGIC, len(payload), zlib.crc32(payload)) + payload


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


def scan(data: Buffer, start: int, end: int, *, largest: int) -> Iterator[Frame | Damage]:
    """The records and damaged regions of data[start:end], in order. `end` is where complete writes end
    (the file's size while no writer is appending), so a record that does not fit is damaged. Past
    damage, records are looked for no larger than `largest` (a `largest_record`); where one record ends,
    the next is read whatever its size (a record written under a larger body cap than today's)."""
    position = start
    while position < end:
        frame = frame_at(data, position, end)
        if frame is not None:
            yield frame
            position = frame.end
            continue
        resume = _next_frame(data, position + 1, end, largest)
        yield Damage(position, resume)
        position = resume


def frame_at(data: Buffer, position: int, end: int, largest: int | None = None) -> Frame | None:
    """The record at `position`, if one that checks out (and is no larger than `largest`) begins there."""
    if end - position < RECORD_HEADER_BYTES:
        return None
    magic, length, checksum = _RECORD_HEADER.unpack_from(data, position)
    payload_start = position + RECORD_HEADER_BYTES
    if magic != RECORD_MAGIC or length > end - payload_start:
        return None
    if largest is not None and RECORD_HEADER_BYTES + length > largest:
        return None
    payload = bytes(data[payload_start : payload_start + length])
    if zlib.crc32(payload) != checksum:
        return None
    return Frame(position, payload_start + length, payload)


def _next_frame(data: Buffer, position: int, end: int, largest: int) -> int:
    """Where the next record that checks out begins, at or after `position` (`end` when none does)."""
    while position < end:
        found = data.find(RECORD_MAGIC, position, end)
        if found < 0:
            return end
        if frame_at(data, found, end, largest) is not None:
            return found
        position = found + 1
    return end
