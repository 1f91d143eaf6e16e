"""A loopback webhook receiver for delivery tests: a threaded HTTP/1.1 server (keep-alive) that verifies
every request with the official `standardwebhooks` library, as a consumer would, and records it.

    receiver.expect("/hook", secret)             verify requests to /hook with this secret
    url = receiver.url("/hook")                  http://hooks.test:<port>/hook (hooks.test: see RESOLVER)
    receiver.answer("/hook", status=500)         how /hook answers (default 204), optionally after a delay
    receiver.wait_for(3, "/hook")                the first three requests to /hook (fails after a timeout)

Behaviours (per path): a status with a body; redirect; hang (say nothing until the client leaves);
drip (a byte of the status line every interval); huge (200 with 10 MB); close (half a status line,
then the connection closed). Every request is recorded, verified or not, with its arrival time, and
`most_at_once(path)` says how many requests to a path were ever being answered at the same time.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

HOOKS_HOST = "hooks.test"
HUGE_BYTES = 10 * 1024 * 1024


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]  # lower-case names
    body: bytes
    verified: bool  # by standardwebhooks.Webhook(secret).verify, with the secret expected for the path
    payload: Any  # what verify() returned (the parsed JSON), None when not verified
    at: float  # time.monotonic() when the request was read
    wall_time: float  # time.time() then


@dataclass
class _Route:
    behaviour: str = "status"
    status: int = 204
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    # Called with each verified payload before answering (e.g. to change the behaviour).
    hook: Callable[[Any], None] | None = None


class Receiver:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self._routes: dict[str, _Route] = {}
        self._secrets: dict[str, list[str]] = {}
        self._log: list[Received] = []
        self._in_flight: dict[str, int] = {}
        self._most_at_once: dict[str, int] = {}
        self.stopping = threading.Event()
        self._server = _Server(self)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        return self._server.server_port

    def url(self, path: str = "/hook", host: str = HOOKS_HOST) -> str:
        return f"http://{host}:{self.port}{path}"

    def expect(self, path: str, *secrets: str) -> None:
        """Verify requests to `path` with any of `secrets` (each checked on its own)."""
        with self._lock:
            self._secrets[path] = list(secrets)

    def answer(self, path: str, status: int = 204, body: bytes = b"", delay: float = 0.0, **headers: str) -> None:
        self._set(path, _Route("status", status, body, dict(headers), delay))

    def most_at_once(self, path: str) -> int:
        with self._lock:
            return self._most_at_once.get(path, 0)

    def answering(self, path: str, change: int) -> None:
        with self._lock:
            self._in_flight[path] = self._in_flight.get(path, 0) + change
            self._most_at_once[path] = max(self._most_at_once.get(path, 0), self._in_flight[path])

    def behave(self, path: str, behaviour: str) -> None:
        """redirect, hang, drip, huge or close (see the module docstring)."""
        self._set(path, _Route(behaviour))

    def on_request(self, path: str, hook: Callable[[Any], None]) -> None:
        with self._lock:
            self._routes.setdefault(path, _Route()).hook = hook

    def requests(self, path: str | None = None) -> list[Received]:
        with self._lock:
            return [r for r in self._log if path is None or r.path == path]

    def wait_for(self, count: int, path: str | None = None, timeout: float = 10) -> list[Received]:
        deadline = time.monotonic() + timeout
        with self._arrived:
            while True:
                found = [r for r in self._log if path is None or r.path == path]
                if len(found) >= count:
                    return found
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"{len(found)} of {count} requests to {path} arrived within {timeout} s")
                self._arrived.wait(remaining)

    def reset(self) -> None:
        with self._lock:
            self._routes.clear()
            self._secrets.clear()
            self._log.clear()
            self._in_flight.clear()
            self._most_at_once.clear()

    def close(self) -> None:
        self.stopping.set()
        self._server.shutdown()
        self._server.server_close()

    def _set(self, path: str, route: _Route) -> None:
        with self._lock:
            self._routes[path] = route

    def record(self, handler: _Handler, body: bytes) -> _Route:
        path = handler.path.split("?", 1)[0]
        headers = {name.lower(): value for name, value in handler.headers.items()}
        with self._lock:
            secrets = list(self._secrets.get(path, ()))
            route = self._routes.get(path) or _Route()
        payload, verified = None, False
        for secret in secrets:
            try:
                payload = Webhook(secret).verify(body, headers)
                verified = True
                break
            except WebhookVerificationError:
                continue
        received = Received(path, headers, body, verified, payload, time.monotonic(), time.time())
        with self._arrived:
            self._log.append(received)
            self._arrived.notify_all()
        if route.hook is not None and verified:
            route.hook(payload)
        return route


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"  # keep-alive, as receivers behind any real web server
    timeout = 30

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        receiver = self.server.receiver
        path = self.path.split("?", 1)[0]
        receiver.answering(path, +1)
        answering = True
        try:
            route = receiver.record(self, body)
            if route.delay:
                receiver.stopping.wait(route.delay)
            # Done with the request before the answer goes out: once a client has its answer, its next
            # request (or another worker's, after this one's turn) must not find this one still counted.
            receiver.answering(path, -1)
            answering = False
            self._behave(route, receiver)
        except OSError:
            pass  # the client left, as several behaviours make it do
        finally:
            if answering:
                receiver.answering(path, -1)

    def _behave(self, route: _Route, receiver: Receiver) -> None:
        if route.behaviour == "status":
            self.send_response(route.status)
            for name, value in route.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(route.body)))
            self.end_headers()
            self.wfile.write(route.body)
        elif route.behaviour == "redirect":
            self.send_response(307)
            self.send_header("Location", f"http://{HOOKS_HOST}:{receiver.port}/elsewhere")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif route.behaviour == "hang":
            receiver.stopping.wait(60)
            self.close_connection = True
        elif route.behaviour == "drip":
            for byte in b"HTTP/1.1 200 OK\r\n":
                if receiver.stopping.wait(0.3):
                    break
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
            self.close_connection = True
        elif route.behaviour == "huge":
            self.send_response(200)
            self.send_header("Content-Length", str(HUGE_BYTES))
            self.end_headers()
            chunk = b"x" * 65536
            for _ in range(HUGE_BYTES // len(chunk)):
                self.wfile.write(chunk)
        elif route.behaviour == "close":
            self.wfile.write(b"HTTP/1.1 2")
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, receiver: Receiver):
        self.receiver = receiver
        super().__init__(("127.0.0.1", 0), _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass


def payload_of(received: Received) -> dict[str, Any]:
    assert received.verified, f"unverified delivery to {received.path}: {received.headers}"
    payload: dict[str, Any] = json.loads(received.body)
    return payload
