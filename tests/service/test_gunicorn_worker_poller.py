"""The web worker's poller (webhook_service/gunicorn_worker.py) driven by hand: the worker's own poller
and deadlines on socket pairs, with a thread pool that only records what it is given. What the served
tests (test_slow_clients.py) cannot set up quickly: small limits, and what exactly reaches a thread."""

from __future__ import annotations

import logging
import selectors
import socket
import time
from concurrent import futures
from dataclasses import replace

import pytest
from gunicorn.config import Config
from gunicorn.workers.gthread import TConn

from webhook_service.gunicorn_worker import ClientLimits, TimedUnreader, request_buffering_worker

LIMITS = ClientLimits(header_seconds=0.3, body_seconds=0.3, buffered_body_bytes=1000, buffered_bytes=100_000)


class RecordingPool:
    """Stands for the worker's threads: keeps the connections handed over."""

    def __init__(self) -> None:
        self.handed: list[TConn] = []

    def submit(self, _handle, conn: TConn) -> futures.Future:
        self.handed.append(conn)
        return futures.Future()  # never done: the connection stays with the "thread"


class Harness:
    def __init__(self, limits: ClientLimits) -> None:
        self.worker = request_buffering_worker(limits)(0, 0, [], None, 30, Config(), logging.getLogger("test"))
        self.pool = self.worker.tpool = RecordingPool()
        self.worker.poller = selectors.DefaultSelector()
        self.worker.method_queue.init()
        self.pairs: list[tuple[socket.socket, socket.socket]] = []

    def connect(self) -> tuple[TConn, socket.socket]:
        """A new connection, as gthread's accept() makes and hands it on."""
        server, client = socket.socketpair()
        self.pairs.append((server, client))
        conn = TConn(self.worker.cfg, server, ("127.0.0.1", 40000), ("127.0.0.1", 8000))
        self.worker.nr_conns += 1
        self.worker.enqueue_req(conn)
        return conn, client

    def turn(self, seconds: float = 0.05) -> None:
        """One turn of the worker's loop."""
        self.worker.wait_for_and_dispatch_events(seconds)
        self.worker.murder_pending()

    def given_to_thread(self, conn: TConn) -> bytes:
        """What the thread's parser will read first (the bytes the poller read), once handed over."""
        assert conn in self.pool.handed
        assert isinstance(conn.parser.unreader, TimedUnreader)
        return conn.parser.unreader.buf.getvalue()

    def close(self) -> None:
        for server, client in self.pairs:
            server.close()
            client.close()
        self.worker.poller.close()
        self.worker.method_queue.close()
        self.worker.tmp.close()


@pytest.fixture
def harness():
    made: list[Harness] = []

    def make(limits: ClientLimits = LIMITS) -> Harness:
        made.append(Harness(limits))
        return made[-1]

    yield make
    for each in made:
        each.close()


def closed(client: socket.socket) -> bool:
    client.settimeout(0.5)
    try:
        return client.recv(100) == b""
    except ConnectionResetError:
        return True


def test_a_head_in_pieces_goes_to_a_thread_once_complete_with_every_byte(harness):
    served = harness()
    conn, client = served.connect()
    for piece in (b"GET / HTTP/1.1\r\n", b"Host: x\r\n\r", b"\nGET /next HTTP/1.1\r\n"):
        assert conn not in served.pool.handed
        client.sendall(piece)
        served.turn()
    assert served.given_to_thread(conn) == b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET /next HTTP/1.1\r\n"


def test_a_body_up_to_the_bound_is_read_before_the_hand_over_and_a_larger_one_after_the_head(harness):
    served = harness()
    small, small_client = served.connect()
    large, large_client = served.connect()
    small_client.sendall(b"POST / HTTP/1.1\r\nContent-Length: 1000\r\n\r\n" + b"x" * 500)
    large_client.sendall(b"POST / HTTP/1.1\r\nContent-Length: 1001\r\n\r\n" + b"x" * 500)
    served.turn()
    assert served.pool.handed == [large]
    small_client.sendall(b"x" * 500)
    served.turn()
    assert served.given_to_thread(small).endswith(b"\r\n\r\n" + b"x" * 1000)


def test_past_the_bytes_a_worker_may_hold_a_body_is_read_by_the_thread(harness):
    served = harness(replace(LIMITS, buffered_bytes=1500))
    first, first_client = served.connect()
    second, second_client = served.connect()
    first_client.sendall(b"POST / HTTP/1.1\r\nContent-Length: 1000\r\n\r\n")
    served.turn()
    second_client.sendall(b"POST / HTTP/1.1\r\nContent-Length: 1000\r\n\r\n")
    served.turn()
    assert served.pool.handed == [second]  # the first one's 1000 bytes are held already
    first_client.sendall(b"x" * 1000)
    served.turn()
    assert served.pool.handed == [second, first]
    assert served.worker._buffered == 0


def test_a_head_gunicorn_refuses_goes_to_its_parser_at_once(harness):
    served = harness()
    bare_lf, bare_lf_client = served.connect()
    chunked, chunked_client = served.connect()
    bare_lf_client.sendall(b"GET / HTTP/1.1\nHost: x\n")
    chunked_client.sendall(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n")
    served.turn()
    assert set(served.pool.handed) == {bare_lf, chunked}


def test_connections_whose_request_does_not_arrive_in_time_are_closed(harness):
    served = harness()
    _, silent = served.connect()
    _, slow_head = served.connect()
    _, slow_body = served.connect()
    slow_head.sendall(b"GET / HTTP/1.1\r\n")
    slow_body.sendall(b"POST / HTTP/1.1\r\nContent-Length: 100\r\n\r\n")
    served.turn()
    deadline = time.monotonic() + 1
    while served.worker.nr_conns and time.monotonic() < deadline:
        served.turn(0.5)  # the poller wakes up for the next deadline
    assert served.worker.nr_conns == 0 and served.pool.handed == []
    assert closed(silent) and closed(slow_head) and closed(slow_body)


def test_the_poller_answers_100_continue_for_a_body_it_reads(harness):
    served = harness()
    conn, client = served.connect()
    client.sendall(b"POST / HTTP/1.1\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
    served.turn()
    assert client.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n" and conn.continue_sent
    client.sendall(b"hello")
    served.turn()
    assert served.given_to_thread(conn).endswith(b"hello")


def test_a_connection_closed_after_its_answer_is_drained_by_the_poller(harness):
    served = harness()
    conn, client = served.connect()
    client.sendall(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n")
    served.turn()
    answered = futures.Future()
    answered.set_result(False)  # what handle() returns when the connection is not kept alive
    started = time.monotonic()
    served.worker.finish_request(conn, answered)
    assert time.monotonic() - started < 1  # gunicorn's own waited up to 2 s for the client here
    assert client.recv(100) == b""  # the worker's side is shut
    client.sendall(b"more")
    served.turn()
    assert served.worker.nr_conns == 1
    client.shutdown(socket.SHUT_WR)
    served.turn()
    assert served.worker.nr_conns == 0
