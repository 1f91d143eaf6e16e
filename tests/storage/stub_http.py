"""A loopback HTTP server that answers every request with one scripted response: how the tests make a
backend misbehave (5xx, throttling, refusals, bodies cut short) without mocking the SDKs."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class ScriptedResponse:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    # Announce more bytes than are sent, then hang up: a connection lost mid-body.
    cut_short_by: int = 0


class StubHTTPServer:
    def __init__(self) -> None:
        self.response = ScriptedResponse()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # so "Expect: 100-continue" uploads get their 100

            def answer(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                response = stub.response
                self.send_response(response.status)
                for name, value in response.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(response.body) + response.cut_short_by))
                self.send_header("Connection", "close")
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(response.body)
                self.close_connection = True

            do_GET = do_PUT = do_HEAD = do_DELETE = do_POST = answer

            def log_message(self, format: str, *args: object) -> None:
                pass

        return Handler
