"""POSTing deliveries to one endpoint, over connections made under the SSRF rules (network/).

What a receiver can do to a sender, and what this one does about it:
- It may resolve to a private address at delivery time (DNS changes after registration): every new
  connection resolves and checks again, and the attempt is refused before any connection is made.
- It may redirect: redirects are never followed; a 3xx is a failed attempt like any other non-2xx.
- It may hang, or drip its answer a byte at a time: the attempt's deadline (delivery.timeout_seconds,
  connecting included) shuts the socket down, so a worker is never held longer than that.
- It may answer with megabytes: only the first KiB is kept for the attempt's record; the rest is read
  (and dropped) only when it is small, so that the connection can carry the next delivery, and
  otherwise the connection is closed.
- It may close the connection mid-answer: before the status line that is a failed attempt; after it, the
  status is the answer (its body is only kept for the record).
- It may answer with malformed HTTP, oversized lines or endless headers: a failed attempt
  (responses.py reads the answer, with http.client's limits).

A connection is kept between the deliveries of one worker turn (and checked when it was made). One that
the receiver closed while idle fails on the next request before any answer; that request is sent again,
once, on a new connection.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

from urllib3.connection import HTTPConnection

from webhook_service.delivery.responses import ConnectionReader, read_response
from webhook_service.network.connections import NETWORK_ERRORS, Connector, Deadline
from webhook_service.network.targets import OutboundError, Target

USER_AGENT = "webhook-service-delivery/1.0"
# A header's name as http.client accepts it; what no header value may hold (no folding either).
_HEADER_NAME = re.compile(r"[^:\s][^:\r\n]*")
_BAD_HEADER_VALUE = re.compile(r"[\r\n\x00]")


@dataclass(frozen=True)
class Answer:
    """How one attempt went: the receiver's HTTP status, or the error that came before one."""

    http_status: int | None
    error: OutboundError | None
    seconds: float
    body: str | None  # the first KiB of the answer's body, undecodable bytes replaced

    @property
    def delivered(self) -> bool:
        return self.http_status is not None and 200 <= self.http_status < 300


class EndpointSession:
    """Deliveries to one endpoint during one worker turn (one thread): at most one connection, kept
    between them while the receiver allows it. Close it at the end of the turn."""

    def __init__(self, connector: Connector, target: Target):
        self._connector = connector
        self._target = target
        self._connection: HTTPConnection | None = None
        self._reader: ConnectionReader | None = None  # the kept connection's
        self._head = _request_head(target)

    def post(self, body: bytes, headers: dict[str, str]) -> Answer:
        started = time.monotonic()
        with Deadline(self._connector.rules.total_timeout) as deadline:
            try:
                reused = self._connection is not None
                try:
                    status, kept = self._exchange(body, headers, deadline)
                except OutboundError as error:
                    if not (reused and error.code == "connection_failed" and not deadline.expired):
                        raise
                    status, kept = self._exchange(body, headers, deadline)  # the kept connection had gone stale
            except OutboundError as error:
                return Answer(None, error, time.monotonic() - started, None)
        return Answer(status, None, time.monotonic() - started, kept)

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = self._reader = None

    def _exchange(self, body: bytes, headers: dict[str, str], deadline: Deadline) -> tuple[int, str]:
        target = self._target
        connection, reader, self._connection, self._reader = self._connection, self._reader, None, None
        if connection is None or reader is None:
            connection = self._connector.connect(target, deadline)
            reader = None
        else:
            deadline.watch(connection.sock)
        try:
            # The request in one write on the connection urllib3 made (pinned to the checked address, TLS
            # with SNI and the certificate checked against the host name), and the answer read off its
            # socket: urllib3's and http.client's wrappers (a check per header, a write for the head and
            # one for the body, the email package parsing the answer's head) cost more than a whole
            # exchange with a receiver on the same machine.
            sock = connection.sock
            if sock is None:
                raise ConnectionError("the connection has no socket")
            reader = reader or ConnectionReader(sock)
            sock.sendall(self._request(body, headers))
            response = read_response(reader)
        except NETWORK_ERRORS as exc:
            connection.close()
            raise self._connector.failure(exc, target, deadline) from exc
        if response.reusable and not deadline.expired:
            self._connection, self._reader = connection, reader
        else:
            connection.close()
        return response.status, response.kept

    def _request(self, body: bytes, headers: dict[str, str]) -> bytes:
        """The request's bytes: the session's fixed head, the delivery's own headers (checked as
        http.client checks them), the length and the body."""
        lines = []
        for name, value in headers.items():
            if not _HEADER_NAME.fullmatch(name) or _BAD_HEADER_VALUE.search(value):
                raise ValueError(f"invalid header {name!r}")
            lines.append(f"{name}: {value}\r\n")
        lines.append(f"Content-Length: {len(body)}\r\n\r\n")
        return b"".join((self._head, "".join(lines).encode("latin-1"), body))


def _request_head(target: Target) -> bytes:
    """The request line and the headers every delivery to `target` carries. The target was validated
    when it was parsed (no whitespace or control characters, non-ASCII percent-encoded)."""
    return (
        f"POST {target.request_target} HTTP/1.1\r\n"
        f"Host: {target.authority}\r\n"
        f"User-Agent: {USER_AGENT}\r\n"
        "Content-Type: application/json\r\n"
        "Accept-Encoding: identity\r\n"
    ).encode("ascii")
