"""The pieces of the web worker (webhook_service/gunicorn_worker.py) that decide how much of a request the
poller reads, and that bound what a thread reads; tests/service/test_slow_clients.py has it served."""

from __future__ import annotations

import socket
import time

import pytest
from gunicorn.config import Config

from webhook_service.gunicorn_worker import (
    ClientTooSlow,
    Framing,
    TimedUnreader,
    find_head_end,
    framing_of,
    has_bare_line_feed,
    largest_head,
)


def test_the_head_ends_at_its_blank_line_also_when_it_arrives_in_pieces():
    data = bytearray(b"GET / HTTP/1.1\r\nHost: x\r\n\r")
    assert find_head_end(data, 0) == -1
    searched = len(data)
    data += b"\nbody"
    assert find_head_end(data, searched) == len(data) - len(b"body")


def test_a_bare_line_feed_is_found_but_not_a_crlf_split_between_reads():
    data = bytearray(b"GET / HTTP/1.1\r")
    assert not has_bare_line_feed(data, 0)
    start = len(data)
    data += b"\nHost: x\r\n"
    assert not has_bare_line_feed(data, start)
    start = len(data)
    data += b"X-Bare: y\n"
    assert has_bare_line_feed(data, start)


@pytest.mark.parametrize(
    ("head", "framing"),
    [
        (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", Framing()),
        (b"POST / HTTP/1.1\r\ncontent-LENGTH : 12\r\n\r\n", Framing(12)),
        (b"\r\nPOST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n", Framing(0)),
        (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", Framing(at_head=True)),
        (b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n", Framing(at_head=True)),
        (b"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", Framing(at_head=True)),
        (b"POST / HTTP/1.1\r\nContent-Length: 5\r\nExpect: 100-Continue\r\n\r\n", Framing(5, expects_continue=True)),
        (b"POST / HTTP/1.0\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n", Framing(5)),
        (b"POST / HTTP/1.1\r\nContent-Length: 5\r\nExpect: something\r\n\r\n", Framing(at_head=True)),
    ],
)
def test_the_framing_of_a_head(head, framing):
    assert framing_of(head) == framing


def test_the_largest_head_is_what_gunicorns_limits_allow():
    config = Config()
    assert largest_head(config) == 4094 + 100 * (8190 + 2) + 6
    config.set("limit_request_line", 0)
    assert largest_head(config) == 1024 * 1024 + 100 * (8190 + 2) + 6


@pytest.fixture
def pair():
    server, client = socket.socketpair()
    yield server, client
    server.close()
    client.close()


def test_a_read_waits_at_most_the_read_timeout_and_then_every_read_fails_at_once(pair):
    server, client = pair
    unreader = TimedUnreader(server)
    unreader.allow(until=time.monotonic() + 10, per_read=0.2, min_rate=1000)
    client.sendall(b"abc")
    assert unreader.read() == b"abc"
    started = time.monotonic()
    with pytest.raises(ClientTooSlow):
        unreader.read()
    assert 0.15 < time.monotonic() - started < 3  # the 0.2 s read timeout, not the 10 s deadline
    client.sendall(b"late")
    with pytest.raises(ClientTooSlow):
        unreader.read()
    assert server.gettimeout() is None  # writes of the answer are not limited


def test_reads_end_by_the_deadline_extended_by_the_bytes_received(pair):
    server, client = pair
    unreader = TimedUnreader(server)
    unreader.allow(until=time.monotonic() + 0.2, per_read=10, min_rate=1000)
    client.sendall(b"x" * 300)  # 0.3 s more
    assert unreader.read() == b"x" * 300
    started = time.monotonic()
    with pytest.raises(ClientTooSlow):
        unreader.read()
    assert 0.3 < time.monotonic() - started < 3  # the extended deadline, not the 10 s per read


def test_a_shorter_timeout_of_the_caller_stays_the_callers(pair):
    """gunicorn's drain of an unread body sets its own timeout and expects a TimeoutError."""
    server, _ = pair
    unreader = TimedUnreader(server)
    unreader.allow(until=time.monotonic() + 10, per_read=10, min_rate=1000)
    server.settimeout(0.1)
    with pytest.raises(TimeoutError) as raised:
        unreader.read()
    assert not isinstance(raised.value, ClientTooSlow) and server.gettimeout() == 0.1
