"""A loopback media server for download tests (the fetcher's, and the attachment pipeline's).

One server per test session and pytest-xdist worker, on 127.0.0.1 and OS-chosen ports: a plain
http listener and a TLS listener share the same routes. Tests register routes on the
function-scoped `media_server` fixture; routes and the request log are cleared after each test.

    def test_download(media_server):
        url = media_server.serve("/cat.jpg", JPEG_BYTES, content_type="image/jpeg")
        fetcher = SafeFetcher(loopback_policy(), loopback_resolver())
        fetcher.fetch(url, io.BytesIO())
        assert media_server.requests("/cat.jpg")[0].headers["accept-encoding"] == "identity"

Routes (paths match without the query string; unknown paths answer 404). Each method returns the
route's URL for host "media.test" over http:
    serve(path, body, content_type=..., headers=None, status=200, chunked=False)
                                                                     a fixed answer
    serve_after(path, seconds, body, content_type)                   the same, `seconds` after the request
    redirect(path, location, status=302)                             a Location answer
    fail(path, status, times=None, then=b"", content_type=...)       `status` `times` times (None:
                                                                     always), then 200 with `then`
    require_basic_auth(path, username, password, body, content_type=...)
                                                                     401 unless the credentials match
    trickle(path, interval=2.0, in_headers=False)                    one byte per interval, forever
    lying_length(path, declared, sent)                               Content-Length: declared, then
                                                                     `sent` bytes
    endless(path)                                                    no Content-Length, zeros until
                                                                     the client leaves
    gzip_bomb(path, decoded_size=10 MiB)                             `Content-Encoding: gzip` of that
                                                                     many zeros
Also:
    url(path, host="media.test", tls=False)   the URL of a route for another host name or over TLS
    requests(path=None)                       the requests received, as RecordedRequest(method, target,
                                              headers with lower-case names, tls, received_at monotonic)
    reset()                                   forget routes and requests (the fixture does it after each test)
    http_port, https_port, ca_file            ca_file is the PEM to put in FetchPolicy.tls_ca_file

Names: "media.test" and "other.test" (LOOPBACK_HOSTS) both resolve to 127.0.0.1 through
`loopback_resolver()`, and `loopback_policy()` exempts exactly those names through
`allow_private_hosts`, so tests go through the real exemption path rather than switching checks
off. The TLS certificate covers "media.test" only: "other.test" over TLS fails verification.
"""

from __future__ import annotations

import base64
import gzip
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from webhook_service.media.fetcher import FetchPolicy

MEDIA_HOST = "media.test"
OTHER_HOST = "other.test"
LOOPBACK_HOSTS = (MEDIA_HOST, OTHER_HOST)
STREAM_CHUNK = 64 * 1024

Route = Callable[["_MediaRequestHandler"], None]


def loopback_policy(**overrides: Any) -> FetchPolicy:
    """A FetchPolicy for the loopback server: http allowed, LOOPBACK_HOSTS exempted by name, short timeouts.

    `overrides` are FetchPolicy fields; add `tls_ca_file=media_server.ca_file` for https URLs.
    """
    settings: dict[str, Any] = {
        "max_bytes": 5 * 1024 * 1024,
        "allow_http": True,
        "allow_private_hosts": frozenset(LOOPBACK_HOSTS),
        "connect_timeout": 2.0,
        "read_timeout": 5.0,
        "total_timeout": 10.0,
    }
    settings.update(overrides)
    return FetchPolicy(**settings)


class StaticResolver:
    """A fetcher Resolver answering from a table; unknown names fail like a DNS miss.

    `calls` lists every host asked about, in order, so tests can count lookups per hop.
    """

    def __init__(self, answers: Mapping[str, Sequence[str]], fallback: Sequence[str] | None = None):
        self._answers = {host.lower(): list(addresses) for host, addresses in answers.items()}
        self._fallback = list(fallback) if fallback is not None else None
        self.calls: list[str] = []

    def __call__(self, host: str, port: int) -> list[str]:
        self.calls.append(host)
        answer = self._answers.get(host.lower(), self._fallback)
        if answer is None:
            raise socket.gaierror(socket.EAI_NONAME, f"{host} is not in the test resolver")
        return list(answer)


def loopback_resolver(extra: Mapping[str, Sequence[str]] | None = None) -> StaticResolver:
    """LOOPBACK_HOSTS -> 127.0.0.1, plus the `extra` answers."""
    return StaticResolver({**{host: ["127.0.0.1"] for host in LOOPBACK_HOSTS}, **(extra or {})})


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    target: str  # path and query as received
    headers: Mapping[str, str]  # lower-case names
    tls: bool
    received_at: float = 0.0  # time.monotonic() when the request arrived


class MediaServer:
    """The loopback http and https listeners, their routes and the requests they received (see above)."""

    def __init__(self, tls_directory: Path):
        self._lock = threading.Lock()
        self._routes: dict[str, Route] = {}
        self._log: list[RecordedRequest] = []
        self.stopping = threading.Event()
        self.ca_file, certificate_file, key_file = _write_tls_files(tls_directory)
        tls_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls_context.load_cert_chain(certificate_file, key_file)
        self._http = _LoopbackHTTPServer(self, None)
        self._https = _LoopbackHTTPServer(self, tls_context)
        self._threads = [
            threading.Thread(
                target=server.serve_forever,
                kwargs={"poll_interval": 0.1},  # shutdown() waits up to one interval
                name=f"media-server-{server.server_port}",
                daemon=True,
            )
            for server in (self._http, self._https)
        ]
        for thread in self._threads:
            thread.start()

    @property
    def http_port(self) -> int:
        return self._http.server_port

    @property
    def https_port(self) -> int:
        return self._https.server_port

    def url(self, path: str, host: str = MEDIA_HOST, *, tls: bool = False) -> str:
        scheme, port = ("https", self.https_port) if tls else ("http", self.http_port)
        return f"{scheme}://{host}:{port}{path}"

    def requests(self, path: str | None = None) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self._log if path is None or r.target.split("?", 1)[0] == path]

    def reset(self) -> None:
        with self._lock:
            self._routes.clear()
            self._log.clear()

    def close(self) -> None:
        self.stopping.set()
        for server in (self._http, self._https):
            server.shutdown()
            server.server_close()

    # Routes -------------------------------------------------------------------------------------

    def serve(
        self,
        path: str,
        body: bytes,
        content_type: str = "application/octet-stream",
        headers: Mapping[str, str] | None = None,
        status: int = 200,
        chunked: bool = False,
    ) -> str:
        if chunked:
            return self._add(
                path, lambda handler: handler.answer_chunked(status, body, content_type, headers)
            )
        return self._add(path, lambda handler: handler.answer(status, body, content_type, headers))

    def serve_after(self, path: str, seconds: float, body: bytes, content_type: str) -> str:
        """`body`, sent only `seconds` after the request arrived (a slow origin, to overlap downloads)."""
        def route(handler: _MediaRequestHandler) -> None:
            self.stopping.wait(seconds)
            handler.answer(200, body, content_type)

        return self._add(path, route)

    def redirect(self, path: str, location: str, status: int = 302) -> str:
        return self._add(
            path, lambda handler: handler.answer(status, b"", "text/plain", {"Location": location})
        )

    def fail(
        self,
        path: str,
        status: int,
        times: int | None = None,
        then: bytes = b"",
        content_type: str = "application/octet-stream",
    ) -> str:
        failures_left = times

        def route(handler: _MediaRequestHandler) -> None:
            nonlocal failures_left
            with self._lock:
                failing = failures_left is None or failures_left > 0
                if failing and failures_left is not None:
                    failures_left -= 1
            if failing:
                handler.answer(status, b"failure for tests", "text/plain")
            else:
                handler.answer(200, then, content_type)

        return self._add(path, route)

    def require_basic_auth(
        self, path: str, username: str, password: str, body: bytes, content_type: str = "image/jpeg"
    ) -> str:
        expected = "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()

        def route(handler: _MediaRequestHandler) -> None:
            if handler.headers.get("Authorization") == expected:
                handler.answer(200, body, content_type)
            else:
                handler.answer(401, b"", "text/plain", {"WWW-Authenticate": 'Basic realm="media"'})

        return self._add(path, route)

    def trickle(self, path: str, interval: float = 2.0, in_headers: bool = False) -> str:
        """One byte every `interval` seconds: of the body, or (in_headers) of an endless header."""

        def route(handler: _MediaRequestHandler) -> None:
            if in_headers:
                handler.wfile.write(b"HTTP/1.1 200 OK\r\nX-Slow: ")
            else:
                handler.wfile.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nConnection: close\r\n\r\n"
                )
            while not self.stopping.wait(interval):
                handler.wfile.write(b"x")

        return self._add(path, route)

    def lying_length(self, path: str, declared: int, sent: int) -> str:
        def route(handler: _MediaRequestHandler) -> None:
            handler.start(200, "image/jpeg", {"Content-Length": str(declared)})
            handler.stream_zeros(sent)

        return self._add(path, route)

    def endless(self, path: str) -> str:
        def route(handler: _MediaRequestHandler) -> None:
            handler.start(200, "image/jpeg", {"Connection": "close"})
            handler.stream_zeros(None)

        return self._add(path, route)

    def gzip_bomb(self, path: str, decoded_size: int = 10 * 1024 * 1024) -> str:
        body = _gzipped_zeros(decoded_size)
        return self.serve(path, body, "image/jpeg", {"Content-Encoding": "gzip"})

    def _add(self, path: str, route: Route) -> str:
        with self._lock:
            self._routes[path] = route
        return self.url(path)

    # Used by the request handler ----------------------------------------------------------------

    def route_for(self, handler: _MediaRequestHandler, tls: bool) -> Route | None:
        headers = {name.lower(): value for name, value in handler.headers.items()}
        with self._lock:
            self._log.append(RecordedRequest(handler.command, handler.path, headers, tls, time.monotonic()))
            return self._routes.get(handler.path.split("?", 1)[0])


class _MediaRequestHandler(BaseHTTPRequestHandler):
    server: _LoopbackHTTPServer
    timeout = 10  # an idle client must not pin a handler thread

    def setup(self) -> None:
        super().setup()
        if isinstance(self.connection, ssl.SSLSocket):
            self.connection.do_handshake()

    def do_GET(self) -> None:
        route = self.server.media.route_for(self, tls=self.server.tls)
        try:
            if route is None:
                self.answer(404, b"no such test route", "text/plain")
            else:
                route(self)
        except OSError:
            pass  # the client hung up, which many tests make it do on purpose

    def start(self, status: int, content_type: str, headers: Mapping[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()

    def answer(
        self, status: int, body: bytes, content_type: str, headers: Mapping[str, str] | None = None
    ) -> None:
        self.start(status, content_type, {"Content-Length": str(len(body)), **(headers or {})})
        self.wfile.write(body)

    def answer_chunked(
        self, status: int, body: bytes, content_type: str, headers: Mapping[str, str] | None = None
    ) -> None:
        """`body` with Transfer-Encoding: chunked, in small chunks, as CDNs often send media."""
        self.start(status, content_type, {"Transfer-Encoding": "chunked", **(headers or {})})
        for offset in range(0, len(body), 1000):
            piece = body[offset : offset + 1000]
            self.wfile.write(b"%x\r\n%b\r\n" % (len(piece), piece))
        self.wfile.write(b"0\r\n\r\n")

    def stream_zeros(self, size: int | None) -> None:
        """`size` zero bytes (None: until the client leaves or the server stops)."""
        chunk = bytes(STREAM_CHUNK)
        sent = 0
        while (size is None or sent < size) and not self.server.media.stopping.is_set():
            piece = chunk if size is None else chunk[: size - sent]
            self.wfile.write(piece)
            sent += len(piece)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the request log is kept by MediaServer; stderr noise helps nobody


class _LoopbackHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # endless and trickling handlers end when their client leaves

    def __init__(self, media: MediaServer, tls_context: ssl.SSLContext | None):
        self.media = media
        self.tls = tls_context is not None
        self._tls_context = tls_context
        super().__init__(("127.0.0.1", 0), _MediaRequestHandler)

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, address = super().get_request()
        if self._tls_context is not None:
            # The handshake runs in the handler's thread (setup), so a stalled client blocks only itself.
            sock = self._tls_context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, address

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients abort handshakes and downloads on purpose in these tests


@cache
def _gzipped_zeros(decoded_size: int) -> bytes:
    return gzip.compress(bytes(decoded_size), compresslevel=9)


def _write_tls_files(directory: Path) -> tuple[str, str, str]:
    """A throwaway CA and a server certificate for MEDIA_HOST signed by it: (ca, certificate, key) paths."""
    now = datetime.now(UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "media_server test CA")])
    ca_certificate = (
        _certificate_builder(ca_name, ca_name, ca_key.public_key(), now)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(certificate_signing=True), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    server_key = ec.generate_private_key(ec.SECP256R1())
    server_certificate = (
        _certificate_builder(
            x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, MEDIA_HOST)]),
            ca_name,
            server_key.public_key(),
            now,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(certificate_signing=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(MEDIA_HOST)]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    paths = (directory / "ca.pem", directory / "server.pem", directory / "server-key.pem")
    paths[0].write_bytes(ca_certificate.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(server_certificate.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        server_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return str(paths[0]), str(paths[1]), str(paths[2])


def _certificate_builder(
    subject: x509.Name, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey, now: datetime
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=2))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )


def _key_usage(certificate_signing: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=certificate_signing,
        crl_sign=certificate_signing,
        encipher_only=False,
        decipher_only=False,
    )


@pytest.fixture(scope="session")
def media_server_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MediaServer]:
    """The session's server; tests normally use `media_server`, which also resets it afterwards."""
    server = MediaServer(tmp_path_factory.mktemp("media-server-tls"))
    yield server
    server.close()


@pytest.fixture
def media_server(media_server_session: MediaServer) -> Iterator[MediaServer]:
    yield media_server_session
    media_server_session.reset()
