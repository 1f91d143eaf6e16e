"""The web process's gunicorn worker: gunicorn's gthread worker, except that a connection gets one of the
worker's threads only once its request has arrived, so that slow and idle clients cannot take them all.

gthread gives every new connection a thread, which waits up to 5 s for the first bytes and then reads the
request head and body with blocking reads that have no deadline: on the served configuration (2 workers
x 8 threads), 200 silent connections made a webhook wait 65 s, and a client sending a byte a second held
a thread for as long as it liked. Closing such connections after a while would not be enough: a client
reconnects and holds a thread again. So here the worker's poller, its main thread, reads
with non-blocking reads into a buffer per connection, and hands the connection to a thread only with

- the request head, which must be complete within `ClientLimits.header_seconds` of the connection (on a
  kept-alive connection, of the next request's first byte; gunicorn's keepalive limits the wait for it);
- and a body announced with a Content-Length up to `buffered_body_bytes` (the webhook cap), which must
  arrive within `body_seconds` plus one second per `body_min_bytes_per_second` bytes.

A connection that misses its deadline is closed. Larger bodies (uploads) and chunked ones are read by the
thread, as before, but each read waits at most `body_seconds`, and all of them must end by the same kind of
deadline, counted from the hand-over and extended by the bytes received (Apache's mod_reqtimeout, body
with MinRate): a stalled upload ends, and a dripping one holds a thread for a bounded time. A connection
closed after its answer is drained and closed by the poller too (gunicorn waits up to 2 s for the client's
side to close on the main thread, where it would stop the poller).

TLS terminated by gunicorn itself, the PROXY protocol and HTTP/2 with prior knowledge keep gunicorn's own
handling: this service serves plain HTTP/1.1, behind a proxy or on loopback.

Built on gthread's internals (`enqueue_req`, `finish_request`, `murder_pending`, `TConn`, the parser's
unreader): pyproject.toml pins gunicorn to the major version they were read in.
"""

from __future__ import annotations

import heapq
import itertools
import math
import selectors
import socket
import time
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from gunicorn.http.errors import NoMoreData
from gunicorn.http.message import DEFAULT_MAX_HEADERFIELD_SIZE, MAX_HEADERS, MAX_REQUEST_LINE
from gunicorn.http.unreader import SocketUnreader
from gunicorn.http2 import negotiation
from gunicorn.workers.gthread import ThreadWorker

MIB = 1024 * 1024
HEAD_END = b"\r\n\r\n"
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
# One non-blocking read of a request: large enough for a whole head and a small body at once, small enough
# that its buffer is not a fresh mapping every time (glibc maps blocks of 128 KiB and more).
RECEIVE_BYTES = 64 * 1024
# A connection closed after its answer: what gunicorn's close_graceful drains before closing (so that
# unread request bytes do not make the kernel reset the connection and cut the answer short).
LINGER_SECONDS = 2.0
LINGER_BYTES = 64 * 1024


@dataclass(frozen=True)
class ClientLimits:
    """How long and how much of a request the poller waits for (the defaults are the settings')."""

    # The request head, from the connection (or, kept alive, from the next request's first byte).
    header_seconds: float = 10.0
    # The body: this long, plus one second per `body_min_bytes_per_second` bytes; and each read a thread
    # makes waits at most this long (nginx's client_body_timeout).
    body_seconds: float = 10.0
    body_min_bytes_per_second: int = 32 * 1024
    # Bodies announced up to this size are read by the poller: the webhook cap, so that a provider's
    # webhook never holds a thread while it arrives.
    buffered_body_bytes: int = MIB
    # All the request bytes one worker's poller holds at once: heads, and the bodies it reads (counted at
    # their announced size from the start). Past it, the rest of a request is read by a thread: the
    # memory many connections can make a worker hold stays bounded.
    buffered_bytes: int = 64 * MIB


class ClientTooSlow(NoMoreData):
    """A read by a thread missed its deadline. A NoMoreData, so that gunicorn ends the connection as it
    ends one whose client went away (and werkzeug tells the application the client disconnected)."""

    def __str__(self) -> str:
        return "the client sent its request too slowly"


class TimedUnreader(SocketUnreader):
    """The parser's reads from the socket in a thread: each waits at most `per_read` seconds, and all of
    them must end by `until`, plus one second per `min_rate` bytes received since `allow`."""

    def __init__(self, sock: socket.socket) -> None:
        super().__init__(sock)
        self.until = math.inf
        self.per_read = math.inf
        self.min_rate = 1.0
        self.received = 0
        # After a missed deadline every read fails at once: the application may try to read on (to
        # discard a body before its error answer), but the connection is lost.
        self.stalled = False

    def allow(self, *, until: float, per_read: float, min_rate: float) -> None:
        self.until, self.per_read, self.min_rate, self.received = until, per_read, min_rate, 0

    def chunk(self, size_hint: int | None = None) -> bytes:
        left = self.until + self.received / self.min_rate - time.monotonic()
        if self.stalled or left <= 0:
            self.stalled = True
            raise ClientTooSlow()
        limit = min(left, self.per_read)
        prior = self.sock.gettimeout()
        self.sock.settimeout(limit if prior is None else min(prior, limit))
        try:
            data: bytes = super().chunk(size_hint)
        except TimeoutError:
            if prior is not None and prior < limit:
                raise  # the caller's own limit (gunicorn's drain of a body the application left)
            self.stalled = True
            raise ClientTooSlow() from None
        finally:
            self.sock.settimeout(prior)
        self.received += len(data)
        return data


# What a request head says about its body --------------------------------------------------------------


@dataclass(frozen=True)
class Framing:
    """What a complete head says about its body, as far as the poller needs to know."""

    body_bytes: int = 0
    # The head goes to gunicorn's parser at once: a body only the parser can delimit (Transfer-Encoding),
    # or a head it will refuse (two or an invalid Content-Length, an Expect it cannot meet).
    at_head: bool = False
    expects_continue: bool = False


def find_head_end(data: bytearray, searched: int) -> int:
    """Where the head ends (just past its blank line), or -1; the first `searched` bytes were searched."""
    index = data.find(HEAD_END, max(0, searched - 3))
    return -1 if index < 0 else index + len(HEAD_END)


def has_bare_line_feed(data: bytearray, start: int) -> bool:
    """Whether a line from `start` on ends with LF alone: gunicorn refuses that head at once (RFC 9112
    section 2.2), so it goes to the parser rather than wait for a blank line that will not come."""
    return data.count(b"\n", start) != data.count(b"\r\n", max(0, start - 1))


def largest_head(cfg: Any) -> int:
    """An upper bound of the request heads gunicorn's parser accepts (as gunicorn/http/message.py works
    out its limits): a longer one is refused whatever follows, so the parser may answer it at once."""
    fields = cfg.limit_request_fields if 0 < cfg.limit_request_fields <= MAX_HEADERS else MAX_HEADERS
    field_size = cfg.limit_request_field_size if cfg.limit_request_field_size > 0 else DEFAULT_MAX_HEADERFIELD_SIZE
    # 0 is no limit; its fast parser then allows 1 MiB.
    line = min(cfg.limit_request_line, MAX_REQUEST_LINE) if cfg.limit_request_line > 0 else MIB
    # The request line's CRLF, the one empty line allowed before it, the blank line that ends the head.
    return line + fields * (field_size + 2) + 6


def framing_of(head: bytes) -> Framing:
    """Only decides how long the poller reads: gunicorn's parser reads the same bytes and decides what
    the request is, so a head this reads differently can cost time, never change the request."""
    lines = head.split(b"\r\n")
    if not lines[0]:
        del lines[0]  # the one empty line RFC 9112 section 2.2 allows before the request line
    lengths, expectations, chunked = [], [], False
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.rstrip(b" \t").lower()
        if name == b"content-length":
            lengths.append(value.strip(b" \t"))
        elif name == b"transfer-encoding":
            chunked = True
        elif name == b"expect":
            expectations.append(value.strip(b" \t").lower())
    if chunked or len(lengths) > 1 or any(value != b"100-continue" for value in expectations):
        return Framing(at_head=True)
    if not lengths:
        return Framing()
    if not lengths[0].isdigit():
        return Framing(at_head=True)
    # gunicorn ignores the expectation in an HTTP/1.0 request, as RFC 9110 section 10.1.1 says.
    return Framing(int(lengths[0]), expects_continue=bool(expectations) and lines[0].endswith(b" HTTP/1.1"))


# The worker -------------------------------------------------------------------------------------------


@dataclass(eq=False)
class _Waiting:
    """A connection the poller holds, until `deadline`."""

    conn: Any  # gunicorn's TConn
    deadline: float
    registered: bool = False  # with the poller
    scheduled: float = 0.0  # the deadline in the worker's heap
    done: bool = False


@dataclass(eq=False)
class _Arrival(_Waiting):
    """A request arriving."""

    data: bytearray = field(default_factory=bytearray)
    searched: int = 0  # bytes searched for the head's end
    head_end: int = 0  # once the head is complete, where it ends
    body_end: int = 0  # where the body the poller reads ends
    held: int = 0  # bytes counted against ClientLimits.buffered_bytes


@dataclass(eq=False)
class _Closing(_Waiting):
    """A connection closed after its answer, drained until the client closes its side."""

    drained: int = 0


class RequestBufferingWorker(ThreadWorker):
    limits = ClientLimits()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._waiting: set[_Waiting] = set()
        # Deadlines of differing lengths, soonest first; an entry whose connection has moved on, or has a
        # new deadline, is skipped when it comes up.
        self._deadlines: list[tuple[float, int, _Waiting]] = []
        self._order = itertools.count()
        self._buffered = 0  # the bytes all arrivals hold
        self._largest_head = largest_head(self.cfg)

    # Where gthread hands a connection to a thread: new ones (accept), kept-alive ones that became
    # readable, and those with pipelined bytes read ahead (finish_request).
    def enqueue_req(self, conn: Any) -> None:
        if self._gunicorns_own(conn):
            super().enqueue_req(conn)
            return
        arrival = _Arrival(conn, deadline=time.monotonic() + self.limits.header_seconds)
        self._waiting.add(arrival)
        conn.sock.setblocking(False)
        if conn.parser is None:
            self._wait(arrival)  # a new connection: its first bytes are seldom there when it is accepted
            return
        # Kept alive and readable, or with the next request's first bytes already read by the thread.
        arrival.data += conn.parser.unreader.take_buffered()
        self._hold(arrival, len(arrival.data))
        if not (arrival.data and self._advance(arrival)):
            self._receive(arrival)

    def finish_request(self, conn: Any, fs: Any) -> None:
        closing = not fs.cancelled() and fs.exception() is None and not fs.result()
        if closing and not self._gunicorns_own(conn):
            self._close_lingering(conn)
        else:
            super().finish_request(conn, fs)

    def handle_request(self, req: Any, conn: Any) -> Any:
        if getattr(conn, "continue_sent", False):
            conn.continue_sent = False
            req._expected_100_continue = False  # the poller has answered it: one 100 Continue is enough
        return super().handle_request(req, conn)

    def murder_pending(self) -> None:
        super().murder_pending()
        now = time.monotonic()
        while self._deadlines and self._deadlines[0][0] <= now:
            deadline, _, waiting = heapq.heappop(self._deadlines)
            if waiting.done or deadline != waiting.deadline:
                continue
            if isinstance(waiting, _Arrival):
                self.log.debug("Closing %s: its request did not arrive in time", waiting.conn.client)
            self._close(waiting)

    def wait_for_and_dispatch_events(self, timeout: float) -> None:
        if self._deadlines:
            timeout = min(timeout, max(0.0, self._deadlines[0][0] - time.monotonic()))
        super().wait_for_and_dispatch_events(timeout)

    def _cap_keepalive(self, deadline: float) -> None:
        # A stopping worker: silent connections get no longer than kept-alive ones.
        super()._cap_keepalive(deadline)
        for waiting in list(self._waiting):
            if isinstance(waiting, _Arrival) and not waiting.data and waiting.deadline > deadline:
                waiting.deadline = deadline
                self._schedule(waiting)

    def _gunicorns_own(self, conn: Any) -> bool:
        """Connections gunicorn reads itself, unchanged: TLS, the PROXY protocol, HTTP/2."""
        cfg = self.cfg
        return bool(
            cfg.is_ssl
            or cfg.proxy_protocol != "off"
            or conn.is_http2
            or negotiation.prior_knowledge_allowed(cfg, conn.client)
        )

    # Reading requests ---------------------------------------------------------------------------------

    def _receive(self, arrival: _Arrival) -> None:
        wanted = RECEIVE_BYTES if not arrival.head_end else min(arrival.body_end - len(arrival.data), RECEIVE_BYTES)
        try:
            data = arrival.conn.sock.recv(wanted)
        except (BlockingIOError, InterruptedError):
            self._wait(arrival)
            return
        except OSError:
            self._close(arrival)
            return
        if not data:  # the client closed before its request was complete
            self._close(arrival)
            return
        arrival.data += data
        if not arrival.head_end:
            self._hold(arrival, len(arrival.data))
        if not self._advance(arrival):
            self._wait(arrival)

    def _advance(self, arrival: _Arrival) -> bool:
        """Hand the request over once it is complete enough, and say whether it was."""
        data = arrival.data
        if not arrival.head_end:
            head_end = find_head_end(data, arrival.searched)
            if head_end < 0:
                # The parser refuses a head with a bare LF or longer than its limits at once; a head
                # arriving while the poller holds all it may is read by a thread, by the same deadline.
                too_long = len(data) > self._largest_head or self._buffered > self.limits.buffered_bytes
                if too_long or has_bare_line_feed(data, arrival.searched):
                    self._hand_over(arrival, head_complete=False)
                    return True
                arrival.searched = len(data)
                return False
            arrival.head_end = head_end
            if not self._read_body(arrival, framing_of(bytes(data[:head_end]))):
                self._hand_over(arrival, head_complete=True)
                return True
        if len(data) >= arrival.body_end:
            self._hand_over(arrival, head_complete=True)
            return True
        return False

    def _read_body(self, arrival: _Arrival, framing: Framing) -> bool:
        """Whether the poller reads this body (as announced by the complete head) before the hand-over."""
        size = framing.body_bytes
        limits = self.limits
        if framing.at_head or not size or size > limits.buffered_body_bytes:
            return False
        arrival.body_end = arrival.head_end + size
        if len(arrival.data) >= arrival.body_end:
            return True
        if self._buffered - arrival.held + arrival.body_end > limits.buffered_bytes:
            return False
        self._hold(arrival, arrival.body_end)
        arrival.deadline = time.monotonic() + limits.body_seconds + size / limits.body_min_bytes_per_second
        if framing.expects_continue:
            self._send_continue(arrival)
        return True

    def _send_continue(self, arrival: _Arrival) -> None:
        """The client waits for this before it sends the body (gunicorn sends it once a thread has the
        request: that would be after the body the poller waits for)."""
        try:
            sent = arrival.conn.sock.send(CONTINUE)
        except OSError:
            sent = 0
        if sent == len(CONTINUE):
            arrival.conn.continue_sent = True
        else:  # 25 bytes that do not fit in an empty send buffer: nothing left to answer
            arrival.deadline = time.monotonic()

    def _hand_over(self, arrival: _Arrival, *, head_complete: bool) -> None:
        conn = arrival.conn
        data = bytes(arrival.data)
        self._let_go(arrival)
        if not conn.initialized:  # a new connection: gunicorn's parser, reading through a TimedUnreader
            conn.init()
            conn.parser.unreader = TimedUnreader(conn.sock)
        # Whatever a thread reads from here on: the rest of a head longer than the poller keeps (by its
        # deadline), or a body the poller does not read.
        conn.parser.unreader.allow(
            until=time.monotonic() + self.limits.body_seconds if head_complete else arrival.deadline,
            per_read=self.limits.body_seconds,
            min_rate=self.limits.body_min_bytes_per_second,
        )
        conn.parser.unreader.unread(data)
        super().enqueue_req(conn)

    # Closing ------------------------------------------------------------------------------------------

    def _close_lingering(self, conn: Any) -> None:
        closing = _Closing(conn, deadline=time.monotonic() + LINGER_SECONDS)
        self._waiting.add(closing)
        try:
            conn.sock.setblocking(False)
            conn.sock.shutdown(socket.SHUT_WR)
        except OSError:
            self._close(closing)
            return
        self._wait(closing)

    def _drain(self, closing: _Closing) -> None:
        try:
            data = closing.conn.sock.recv(RECEIVE_BYTES)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        closing.drained += len(data)
        if not data or closing.drained >= LINGER_BYTES:
            self._close(closing)

    def _close(self, waiting: _Waiting) -> None:
        self._let_go(waiting)
        self.nr_conns -= 1
        waiting.conn.close()

    # The poller and the deadlines ---------------------------------------------------------------------

    def _wait(self, waiting: _Waiting) -> None:
        if not waiting.registered:
            callback = partial(self._on_readable, waiting)
            try:
                self.poller.register(waiting.conn.sock, selectors.EVENT_READ, callback)
            except (OSError, ValueError):  # closed meanwhile
                self._close(waiting)
                return
            waiting.registered = True
        self._schedule(waiting)

    def _on_readable(self, waiting: _Waiting, _sock: socket.socket) -> None:
        if isinstance(waiting, _Arrival):
            self._receive(waiting)
        elif isinstance(waiting, _Closing):
            self._drain(waiting)

    def _schedule(self, waiting: _Waiting) -> None:
        if waiting.scheduled != waiting.deadline:
            heapq.heappush(self._deadlines, (waiting.deadline, next(self._order), waiting))
            waiting.scheduled = waiting.deadline

    def _let_go(self, waiting: _Waiting) -> None:
        """The poller holds the connection no longer (its heap entry stays until it comes up)."""
        waiting.done = True
        self._waiting.discard(waiting)
        if waiting.registered:
            try:
                self.poller.unregister(waiting.conn.sock)
            except (KeyError, OSError, ValueError):
                pass
            waiting.registered = False
        if isinstance(waiting, _Arrival):
            self._hold(waiting, 0)
            waiting.data = bytearray()

    def _hold(self, arrival: _Arrival, size: int) -> None:
        self._buffered += size - arrival.held
        arrival.held = size


def request_buffering_worker(limits: ClientLimits) -> type[RequestBufferingWorker]:
    """The worker class with these limits, for gunicorn's `worker_class` setting."""

    class Configured(RequestBufferingWorker):
        pass

    Configured.limits = limits
    Configured.__name__ = Configured.__qualname__ = RequestBufferingWorker.__name__
    return Configured
