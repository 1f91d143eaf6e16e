"""Reading a receiver's answer to a delivery off the connection: the status, the first KiB of the body for
the attempt's record, and whether the connection may carry the next delivery.

It reads what http.client's HTTPResponse reads, with its limits and its exceptions, but only the three
headers that frame the answer (Content-Length, Transfer-Encoding, Connection): http.client hands the whole
head to the email package's parser, which costs more than the rest of an exchange with a receiver on the
same machine. What a receiver may do and what is done about it:
- nothing, or half a status line, then close: http.client.RemoteDisconnected or BadStatusLine (no answer);
- a status line or header line over 64 KiB, or over 100 headers: http.client.LineTooLong / HTTPException;
- interim 1xx answers before the real one: skipped (at most MAX_INTERIM of them);
- a body of any size: the first KiB is kept; the rest is read (and dropped) only when it is at most
  REUSE_BODY_LIMIT, so that the connection can carry the next delivery, and otherwise the connection
  is closed. A chunked body is read the same way, chunk by chunk;
- a body that breaks off, or framing that makes no sense: the status still stands, the record is shorter
  and the connection is closed;
- HTTP/1.0, `Connection: close`, a body framed by the end of the connection, or bytes after the answer:
  the connection is closed after it.
"""

from __future__ import annotations

import http.client
import socket
from dataclasses import dataclass

from webhook_service.database.tables import storable
from webhook_service.network.connections import NETWORK_ERRORS

# How much of an answer's body is kept with the attempt.
KEPT_BODY_BYTES = 1024
# Answers whose body is at most this long are read to the end to keep the connection; longer ones are
# cut off and their connection closed.
REUSE_BODY_LIMIT = 64 * 1024
# http.client's limits.
MAX_LINE = 65536
MAX_HEADERS = 100
MAX_INTERIM = 10
_RECEIVE_BYTES = 65536


@dataclass(frozen=True)
class Response:
    status: int
    kept: str  # the first KiB of the body, undecodable bytes and NULs replaced
    reusable: bool  # read to its end, and the connection may carry another request


class ConnectionReader:
    """Buffered reads from one connection's socket, kept as long as the connection (answers follow one
    another on it, so nothing read ahead belongs to anything else)."""

    def __init__(self, sock: socket.socket):
        self._sock = sock
        self._buffer = bytearray()

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def readline(self) -> bytes:
        """The next line with its end (b"\\n"), the rest at the end of the connection, b"" after it."""
        start = 0
        while True:
            end = self._buffer.find(b"\n", start)
            if end >= 0:
                if end >= MAX_LINE:
                    raise http.client.LineTooLong("header line")
                return self._take(end + 1)
            if len(self._buffer) > MAX_LINE:
                raise http.client.LineTooLong("header line")
            start = len(self._buffer)
            if not self._fill():
                return self._take(len(self._buffer))

    def read(self, size: int) -> bytes:
        """`size` bytes, fewer only at the end of the connection."""
        while len(self._buffer) < size and self._fill():
            pass
        return self._take(min(size, len(self._buffer)))

    def skip(self, size: int) -> bool:
        """Drop `size` bytes; False if the connection ended first."""
        while size > 0:
            if not self._buffer and not self._fill():
                return False
            taken = min(size, len(self._buffer))
            del self._buffer[:taken]
            size -= taken
        return True

    def _fill(self) -> bool:
        data = self._sock.recv(_RECEIVE_BYTES)
        if not data:
            return False
        self._buffer += data
        return True

    def _take(self, size: int) -> bytes:
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data


def read_response(reader: ConnectionReader) -> Response:
    """The answer to the request just sent. Raises what http.client raises when no status came (an
    OSError or an http.client.HTTPException), and only then."""
    for _ in range(MAX_INTERIM + 1):
        version, status = _status_line(reader.readline())
        headers = _headers(reader)
        if not (100 <= status < 200) or status == 101:
            break
    else:
        raise http.client.HTTPException(f"more than {MAX_INTERIM} interim answers")
    closes = version == "HTTP/1.0" or "close" in _tokens(headers.get("connection", ""))
    kept = bytearray()
    try:
        complete = _body(reader, status, headers, kept)
    except NETWORK_ERRORS:
        complete = False  # the status came; a body that breaks off only shortens the record
    reusable = complete and not closes and reader.buffered == 0
    # Kept as the attempt's response_body: a NUL (any binary answer has them) is refused by PostgreSQL's
    # text columns, and the record of the whole batch with it.
    return Response(status, storable(kept.decode("utf-8", "replace")), reusable)


def _status_line(line: bytes) -> tuple[str, int]:
    if not line:
        raise http.client.RemoteDisconnected("Remote end closed connection without response")
    parts = line.decode("iso-8859-1").split(None, 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/"):
        raise http.client.BadStatusLine(repr(line))
    if not parts[0].startswith("HTTP/1."):
        raise http.client.UnknownProtocol(parts[0])
    code = parts[1]
    if len(code) != 3 or not code.isascii() or not code.isdigit() or int(code) < 100:
        raise http.client.BadStatusLine(repr(line))
    return parts[0], int(code)


def _headers(reader: ConnectionReader) -> dict[str, str]:
    """The framing headers (lower-case names; repeated ones joined with commas, as HTTP reads them)."""
    framing: dict[str, str] = {}
    for _ in range(MAX_HEADERS + 1):
        line = reader.readline()
        if line in (b"\r\n", b"\n", b""):
            return framing
        if line[:1] in (b" ", b"\t"):
            continue  # a folded continuation (obsolete): never one of the framing headers
        name, colon, value = line.decode("iso-8859-1").partition(":")
        name = name.strip().lower()
        if colon and name in ("content-length", "transfer-encoding", "connection"):
            value = value.strip()
            framing[name] = f"{framing[name]}, {value}" if name in framing else value
    raise http.client.HTTPException(f"got more than {MAX_HEADERS} headers")


def _tokens(value: str) -> set[str]:
    return {token.strip().lower() for token in value.split(",")}


def _body(reader: ConnectionReader, status: int, headers: dict[str, str], kept: bytearray) -> bool:
    """Read the body, its first KiB into `kept`; whether it was read to its end."""
    if status in (204, 304) or 100 <= status < 200:
        return status != 101  # no body; after 101 the connection speaks another protocol
    encoding = headers.get("transfer-encoding")
    if encoding is not None:
        if encoding.lower() == "chunked":
            return _chunked(reader, kept)
        kept += reader.read(KEPT_BODY_BYTES)  # framed by the end of the connection
        return False
    declared = headers.get("content-length")
    if declared is None:
        kept += reader.read(KEPT_BODY_BYTES)  # framed by the end of the connection
        return False
    lengths = _tokens(declared)
    length = lengths.pop() if len(lengths) == 1 else ""
    if not (length.isascii() and length.isdigit()):
        return False  # framing that cannot be trusted
    size = int(length)
    wanted = min(size, KEPT_BODY_BYTES)
    kept += reader.read(wanted)
    if len(kept) < wanted:
        return False
    rest = size - wanted
    return rest <= REUSE_BODY_LIMIT and reader.skip(rest)


def _chunked(reader: ConnectionReader, kept: bytearray) -> bool:
    total = 0
    while True:
        line = reader.readline()
        size_field = line.split(b";", 1)[0].strip()
        if not line.endswith(b"\n") or not size_field or size_field.strip(_HEX_DIGITS):
            return False
        size = int(size_field, 16)
        if size == 0:
            break
        wanted = min(size, KEPT_BODY_BYTES - len(kept))
        if wanted:
            piece = reader.read(wanted)
            kept += piece
            if len(piece) < wanted:
                return False
        total += size
        if total > KEPT_BODY_BYTES + REUSE_BODY_LIMIT:
            return False
        if not reader.skip(size - wanted) or reader.readline() not in (b"\r\n", b"\n"):
            return False
    for _ in range(MAX_HEADERS + 1):  # the trailer, up to its blank line
        line = reader.readline()
        if line in (b"\r\n", b"\n"):
            return True
        if not line:
            return False
    return False


_HEX_DIGITS = b"0123456789abcdefABCDEF"
