"""Reading a receiver's answer off the connection (delivery/responses.py), byte for byte as receivers may
send it, over a real socket pair: the status, the kept start of the body, whether the connection may
carry the next delivery, and what is raised when no answer came."""

from __future__ import annotations

import http.client
import socket
import threading
from collections.abc import Iterator

import pytest

from webhook_service.delivery.responses import (
    KEPT_BODY_BYTES,
    MAX_HEADERS,
    MAX_LINE,
    REUSE_BODY_LIMIT,
    ConnectionReader,
    Response,
    read_response,
)


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    ours, theirs = socket.socketpair()
    ours.settimeout(5)
    yield ours, theirs
    ours.close()
    theirs.close()


def answer(pair: tuple[socket.socket, socket.socket], data: bytes, close: bool = False) -> Response:
    ours, theirs = pair
    theirs.sendall(data)
    if close:
        theirs.shutdown(socket.SHUT_WR)
    return read_response(ConnectionReader(ours))


@pytest.mark.parametrize(
    ("label", "data", "expected"),
    [
        ("204 without a body", b"HTTP/1.1 204 No Content\r\nServer: x\r\n\r\n", Response(204, "", True)),
        ("200 with a length", b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", Response(200, "hello", True)),
        ("header names in any case", b"HTTP/1.1 200 OK\r\ncOnTeNt-LeNgTh:  2 \r\n\r\nok", Response(200, "ok", True)),
        ("a line end of LF alone", b"HTTP/1.1 202 Accepted\nContent-Length: 2\n\nok", Response(202, "ok", True)),
        (
            "a 500 with its reason",
            b"HTTP/1.1 500 Oops\r\nContent-Length: 6\r\n\r\nbroken",
            Response(500, "broken", True),
        ),
        (
            "the same length twice",
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok",
            Response(200, "ok", True),
        ),
        (
            "chunked, with an extension and a trailer",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2;x=y\r\nok\r\n3\r\n!!!\r\n0\r\nX-T: 1\r\n\r\n",
            Response(200, "ok!!!", True),
        ),
        (
            "an interim 100 first",
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
            Response(204, "", True),
        ),
        (
            "a 103 with headers first",
            b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
            Response(200, "", True),
        ),
        (
            "HTTP/1.0",
            b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok",
            Response(200, "ok", False),
        ),
        (
            "Connection: close",
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: Keep-Alive, Close\r\n\r\nok",
            Response(200, "ok", False),
        ),
        ("bytes after the answer", b"HTTP/1.1 204 No Content\r\n\r\nHTTP/1.1 200 OK\r\n\r\n", Response(204, "", False)),
        (
            "two different lengths",
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok!",
            Response(200, "", False),
        ),
        ("a length that is not a number", b"HTTP/1.1 200 OK\r\nContent-Length: -2\r\n\r\nok", Response(200, "", False)),
        (
            "a broken chunk size",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nok\r\n0\r\n\r\n",
            Response(200, "", False),
        ),
        ("a 101", b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n", Response(101, "", False)),
        (
            "undecodable bytes in the body",
            b"HTTP/1.1 400 Bad\r\nContent-Length: 3\r\n\r\nA\xffB",
            Response(400, "A\ufffdB", True),
        ),
    ],
)
def test_answers(pair, label, data, expected):
    assert answer(pair, data) == expected, label


@pytest.mark.parametrize(
    ("label", "data", "expected"),
    [
        ("framed by the end of the connection", b"HTTP/1.1 200 OK\r\n\r\nbody", Response(200, "body", False)),
        (
            "another transfer coding",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nzz",
            Response(200, "zz", False),
        ),
        (
            "cut short of its length",
            b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
            Response(200, "short", False),
        ),
        (
            "chunked, cut short",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
            Response(200, "ab", False),
        ),
        (
            "chunked without its end",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n",
            Response(200, "ok", False),
        ),
    ],
)
def test_answers_ended_by_closing_the_connection(pair, label, data, expected):
    assert answer(pair, data, close=True) == expected, label


def test_a_long_body_is_kept_to_its_first_kib_and_read_to_the_end_when_small(pair):
    ours, theirs = pair
    body = bytes(range(256)) * 4 + b"x" * REUSE_BODY_LIMIT  # the rest exactly at the limit
    sender = threading.Thread(
        target=theirs.sendall, args=(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body,)
    )
    sender.start()
    response = read_response(ConnectionReader(ours))
    sender.join()
    # Kept as the database can store it: the NUL (byte 0) replaced too.
    kept = body[:KEPT_BODY_BYTES].decode("utf-8", "replace").replace("\x00", "\ufffd")
    assert "\x00" not in response.kept and response == Response(200, kept, True)


def test_the_connection_carries_answer_after_answer(pair):
    ours, theirs = pair
    reader = ConnectionReader(ours)
    for index in range(3):
        body = f"answer {index}".encode() * 100
        theirs.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        assert read_response(reader) == Response(200, body[:KEPT_BODY_BYTES].decode(), True)
        theirs.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n800\r\n" + b"c" * 2048 + b"\r\n0\r\n\r\n")
        assert read_response(reader) == Response(200, "c" * KEPT_BODY_BYTES, True)
    assert reader.buffered == 0


def test_a_body_beyond_the_limit_is_not_read_and_the_connection_not_kept(pair):
    # 10 MB declared, only the start sent: reading it to the end would wait for the rest.
    response = answer(pair, b"HTTP/1.1 200 OK\r\nContent-Length: 10485760\r\n\r\n" + b"x" * 4096)
    assert response == Response(200, "x" * KEPT_BODY_BYTES, False)
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n" % (REUSE_BODY_LIMIT * 2) + b"y" * 4096
    assert answer(pair, chunked) == Response(200, "y" * KEPT_BODY_BYTES, False)


@pytest.mark.parametrize(
    ("label", "data", "error"),
    [
        ("nothing", b"", http.client.RemoteDisconnected),
        ("half a status line", b"HTTP/1.1 2", http.client.BadStatusLine),
        ("not HTTP", b"SSH-2.0-OpenSSH_9.6\r\n", http.client.BadStatusLine),
        ("a status of two digits", b"HTTP/1.1 20 OK\r\n\r\n", http.client.BadStatusLine),
        ("a status of letters", b"HTTP/1.1 OK 200\r\n\r\n", http.client.BadStatusLine),
        ("a status of other digits", b"HTTP/1.1 \xd9\xa2\xd9\xa0\xd9\xa0 OK\r\n\r\n", http.client.BadStatusLine),
        ("another version", b"HTTP/2 200\r\n\r\n", http.client.UnknownProtocol),
        ("a status line with no end", b"HTTP/1.1 200 " + b"x" * MAX_LINE, http.client.LineTooLong),
        ("a header line too long", b"HTTP/1.1 200 OK\r\nX: " + b"x" * MAX_LINE + b"\r\n\r\n", http.client.LineTooLong),
        (
            "too many headers",
            b"HTTP/1.1 200 OK\r\n" + b"X: 1\r\n" * (MAX_HEADERS + 1) + b"\r\n",
            http.client.HTTPException,
        ),
        ("endless interim answers", b"HTTP/1.1 100 Continue\r\n\r\n" * 20, http.client.HTTPException),
    ],
)
def test_no_answer(pair, label, data, error):
    with pytest.raises(error):
        answer(pair, data, close=True)


def test_a_receiver_that_sends_nothing_times_out(pair):
    ours, _ = pair
    ours.settimeout(0.2)
    with pytest.raises(TimeoutError):
        read_response(ConnectionReader(ours))
