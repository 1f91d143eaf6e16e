"""Slow and idle clients, served as the Procfile serves the app: connections that send nothing, or drip
their request head or body, must not keep a webhook waiting, and are closed at their deadline. With
gunicorn's own gthread worker each of them held one of the 8 threads, and the webhook waited for one (for
as long as the clients liked, when they dripped). Also what the worker must not break: bodies larger than
it buffers, keep-alive, pipelining and `Expect: 100-continue`."""

from __future__ import annotations

import itertools
import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack

import pytest
import requests
from werkzeug.security import generate_password_hash

from tests.fixtures.app import NUMBER_A, TENANT_A, USER_A
from tests.fixtures.services import free_port
from tests.service.gunicorn import Served, serve, stop
from tests.support.media_uploads import basic
from webhook_service.database.migrate import migrate

CLIENTS = 40
HEADER_SECONDS = 2
BODY_SECONDS = 1
# The poller looks at its deadlines at least once a second; and a loaded test machine.
SLACK_SECONDS = 1.5
WEBHOOK_PATH = "/webhooks/standard/open"
_message_ids = itertools.count()


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Iterator[Served]:
    directory = tmp_path_factory.mktemp("slow-clients")
    database = f"sqlite:///{directory / 'service.db'}"
    migrate(database)
    port = free_port()
    config = directory / "service.toml"
    config.write_text(f"""
port = {port}
data_dir = "{directory / "data"}"
database_url = "{database}"
# One worker, so that every client is its own (with two, the kernel gave nearly all connections to the
# one that accepted first, and the webhook often found the other one idle).
web_workers = 1
web_threads = 8
web_header_timeout_seconds = {HEADER_SECONDS}
web_body_timeout_seconds = {BODY_SECONDS}
[[tenants]]
id = "{TENANT_A}"
phone_numbers = [{{id = "n1", number = "{NUMBER_A}"}}]
[[api_users]]
username = "{USER_A[0]}"
password_hash = "{generate_password_hash(USER_A[1], method="pbkdf2:sha256:1000")}"
tenant = "{TENANT_A}"
[[connections]]
provider = "standard"
name = "open"
tenant = "{TENANT_A}"
verify = false
""")
    served = serve(config, port)
    yield served
    stop(served)


def webhook_body() -> bytes:
    message_id = f"slow-clients-{next(_message_ids)}-{time.time_ns()}"
    data = {"providerMessageId": message_id, "from": "+15550001111", "to": [NUMBER_A], "text": "hello"}
    return json.dumps({"type": "message.received", "data": data}).encode()


def webhook_request(*, connection: str = "keep-alive") -> bytes:
    body = webhook_body()
    head = (
        f"POST {WEBHOOK_PATH} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: {connection}\r\n\r\n"
    )
    return head.encode() + body


def assert_a_webhook_is_answered_at_once(served: Served) -> None:
    started = time.monotonic()
    response = requests.post(
        served.base + WEBHOOK_PATH, data=webhook_body(), headers={"Content-Type": "application/json"}, timeout=3
    )
    elapsed = time.monotonic() - started
    assert response.status_code == 200, response.text
    assert elapsed < 1.0, f"the webhook took {elapsed:.2f} s"


def connect(stack: ExitStack, served: Served, count: int = CLIENTS) -> list[socket.socket]:
    return [stack.enter_context(socket.create_connection(("127.0.0.1", served.port))) for _ in range(count)]


def assert_closed_by(clients: list[socket.socket], deadline: float) -> None:
    """Each connection is closed by the server (an end of stream or a reset) by `deadline`."""
    for client in clients:
        while True:
            client.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                data = client.recv(65536)
            except ConnectionResetError:
                break
            except TimeoutError:
                raise AssertionError(f"a connection was still open {time.monotonic() - deadline:.1f} s late") from None
            if not data:
                break  # anything before it is an error answer


class Dripper:
    """Sends `data` one byte per `interval` to each client, from a thread, until stopped or refused."""

    def __init__(self, clients: list[socket.socket], data: bytes, interval: float = 0.2) -> None:
        self.clients, self.data, self.interval = clients, data, interval
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        open_clients = list(self.clients)
        for byte in itertools.cycle(self.data):
            for client in list(open_clients):
                try:
                    client.send(bytes([byte]))
                except OSError:
                    open_clients.remove(client)
            if self.stopped.wait(self.interval) or not open_clients:
                return

    def __enter__(self) -> Dripper:
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stopped.set()
        self.thread.join(timeout=5)


# Slow and idle clients ----------------------------------------------------------------------------------


def test_idle_connections_do_not_delay_a_webhook_and_are_closed_at_the_header_deadline(served):
    with ExitStack() as stack:
        idle = connect(stack, served)
        connected = time.monotonic()
        time.sleep(0.3)  # accepted by now
        assert_a_webhook_is_answered_at_once(served)
        assert_closed_by(idle, connected + HEADER_SECONDS + SLACK_SECONDS)


def test_a_dripping_request_head_does_not_delay_a_webhook_and_is_closed_at_the_header_deadline(served):
    endless_head = f"POST {WEBHOOK_PATH} HTTP/1.1\r\nHost: test\r\n".encode() + b"X-Drip: y\r\n" * 1000
    with ExitStack() as stack:
        drippers = connect(stack, served)
        connected = time.monotonic()
        with Dripper(drippers, endless_head):
            time.sleep(0.5)
            assert_a_webhook_is_answered_at_once(served)
            assert_closed_by(drippers, connected + HEADER_SECONDS + SLACK_SECONDS)


def test_a_dripping_webhook_body_does_not_delay_a_webhook_and_is_closed_at_the_body_deadline(served):
    head = (
        f"POST {WEBHOOK_PATH} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
    ).encode()
    with ExitStack() as stack:
        drippers = connect(stack, served)
        for client in drippers:
            client.sendall(head)
        sent = time.monotonic()
        with Dripper(drippers, b"[" + b" " * 998 + b"]"):
            time.sleep(0.5)
            assert_a_webhook_is_answered_at_once(served)
            assert_closed_by(drippers, sent + BODY_SECONDS + SLACK_SECONDS)


def test_clients_that_do_not_close_after_a_closing_answer_do_not_delay_a_webhook(served):
    """gunicorn closes such a connection gracefully: it shuts its side and waits up to 2 s for the
    client's, on the thread that accepts and polls all connections (10 clients: 20 s of nothing)."""
    with ExitStack() as stack:
        clients = connect(stack, served, 10)
        for client in clients:
            client.sendall(b"GET /healthz HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        time.sleep(0.3)  # answered by now
        assert_a_webhook_is_answered_at_once(served)


def test_a_chunked_webhook_that_stalls_is_refused_and_closed_after_the_read_timeout(served):
    """A chunked body is read by a thread, as it arrives, each read waiting at most the read timeout."""
    with socket.create_connection(("127.0.0.1", served.port)) as client:
        client.sendall(
            f"POST {WEBHOOK_PATH} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
            'Transfer-Encoding: chunked\r\n\r\n5\r\n{"a":'.encode()
        )
        stalled = time.monotonic()
        client.settimeout(BODY_SECONDS + SLACK_SECONDS)
        status, _ = read_response(client.makefile("rb"))
        assert status == 400
        assert_closed_by([client], stalled + BODY_SECONDS + SLACK_SECONDS)


# Bodies larger than the poller reads -----------------------------------------------------------------


def upload_head(length: int) -> bytes:
    authorization = basic(USER_A)["Authorization"]
    return (
        f"POST /api/v1/media HTTP/1.1\r\nHost: test\r\nAuthorization: {authorization}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
    ).encode()


def test_an_upload_larger_than_the_poller_reads_is_read_by_a_thread(served):
    text = b"a line of text for the upload test\n" * (3 * 1024 * 1024 // 35)
    response = requests.post(
        served.base + "/api/v1/media",
        data={"phoneNumber": NUMBER_A},
        files={"file": ("notes.txt", text, "text/plain")},
        auth=USER_A,
        timeout=30,
    )
    assert response.status_code == 201, response.text
    assert response.json()["size"] == len(text)


def test_an_upload_that_stalls_is_closed_after_the_read_timeout(served):
    with socket.create_connection(("127.0.0.1", served.port)) as client:
        client.sendall(upload_head(3 * 1024 * 1024) + b'{"content": "' + b"A" * 65536)
        stalled = time.monotonic()
        assert_closed_by([client], stalled + BODY_SECONDS + SLACK_SECONDS)


def test_an_upload_dripping_slower_than_the_minimum_rate_is_closed(served):
    """Each read gets a byte within the read timeout: the minimum rate ends it."""
    with ExitStack() as stack:
        (client,) = connect(stack, served, 1)
        client.sendall(upload_head(3 * 1024 * 1024))
        sent = time.monotonic()
        with Dripper([client], b'{"content": "' + b"A" * 1000, interval=0.5):
            assert_closed_by([client], sent + BODY_SECONDS + SLACK_SECONDS)


# What must keep working -------------------------------------------------------------------------------


def read_response(stream) -> tuple[int, bytes]:
    """One HTTP/1.1 response with a Content-Length, from a buffered reader of the connection."""
    status = int(stream.readline().split()[1])
    length = 0
    while (line := stream.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        if name.strip().lower() == "content-length":
            length = int(value)
    return status, stream.read(length)


def test_keep_alive_serves_several_requests_on_one_connection(served):
    with socket.create_connection(("127.0.0.1", served.port), timeout=5) as client:
        stream = client.makefile("rb")
        for _ in range(5):
            client.sendall(webhook_request())
            assert read_response(stream)[0] == 200
            time.sleep(0.05)  # the connection goes back to the poller each time
        client.sendall(b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n")
        assert read_response(stream)[0] == 200


def test_pipelined_requests_are_all_answered_in_order(served):
    health = b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n"
    second = webhook_request()
    with socket.create_connection(("127.0.0.1", served.port), timeout=5) as client:
        stream = client.makefile("rb")
        client.sendall(webhook_request() + health + second[:30])  # the third one's head is incomplete
        time.sleep(0.3)
        client.sendall(second[30:] + webhook_request(connection="close"))
        statuses = [read_response(stream)[0] for _ in range(4)]
        assert statuses == [200, 200, 200, 200]
        assert stream.read() == b""  # closed after the one that asked


def test_a_client_expecting_100_continue_gets_it_once_before_it_sends_the_body(served):
    body = webhook_body()
    head = (
        f"POST {WEBHOOK_PATH} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nExpect: 100-continue\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", served.port), timeout=3) as client:
        stream = client.makefile("rb")
        client.sendall(head)
        assert stream.readline() == b"HTTP/1.1 100 Continue\r\n" and stream.readline() == b"\r\n"
        client.sendall(body)
        assert read_response(stream)[0] == 200
