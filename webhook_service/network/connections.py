"""Connections to hosts someone else chose, pinned to the address that was checked.

- The host name is resolved once per connection by the injected resolver, and the connection is refused
  if ANY returned address is not globally routable (rules in `addresses.py`). The connection then goes to
  the exact address that was checked; the host name is used only for the Host header, TLS SNI and the
  certificate check, so a second DNS answer (DNS rebinding) can never redirect it.
- Cloud metadata addresses are refused even when an exemption would cover them. Exemptions are only the
  rules' `allow_private_hosts` (by host name) and `allow_private_networks` (by address).
- urllib3's connection classes are used directly, so no proxy settings from the environment apply.
- connect_timeout bounds each connection attempt, read_timeout each socket read, and a Deadline the whole
  exchange: when it runs out, the socket is shut down from a watchdog thread, which is the only way to
  stop a server that trickles bytes just often enough to satisfy every per-read timeout.

The media fetcher (media/fetcher.py) and webhook delivery (delivery/sender.py) both connect this way;
what they send and how they read the answer is theirs.
"""

from __future__ import annotations

import contextlib
import heapq
import http.client
import itertools
import os
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv4Network, IPv6Network, ip_network

import urllib3.exceptions
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.util.ssl_match_hostname import CertificateError

from webhook_service.model.credentials import canonical_host_name
from webhook_service.network.addresses import IPAddress, in_networks, is_cloud_metadata, parse_address, refusal_reason
from webhook_service.network.targets import OutboundError, Target

# What connecting, sending and receiving may raise: urllib3 wraps some errors, but http.client and
# the ssl module raise their own while connecting and reading headers.
NETWORK_ERRORS = (OSError, http.client.HTTPException, urllib3.exceptions.HTTPError, CertificateError)

Resolver = Callable[[str, int], list[str]]


def system_resolver(host: str, port: int) -> list[str]:
    """The addresses the operating system resolves `host` to, in its order of preference."""
    answers = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(sockaddr[0]) for *_, sockaddr in answers))


@dataclass(frozen=True)
class OutboundRules:
    """Where outbound connections may go and how long they may take. Invalid settings raise ValueError
    when the rules are built."""

    allow_http: bool = False
    connect_timeout: float = 5.0
    read_timeout: float = 10.0
    total_timeout: float = 30.0
    # Host names (exact) and networks whose private addresses may be reached; strings are accepted.
    allow_private_hosts: frozenset[str] = frozenset()
    allow_private_networks: tuple[IPv4Network | IPv6Network, ...] = ()
    # PEM bundle to trust instead of the system store (a private host's CA, the tests' server).
    tls_ca_file: str | None = None

    def __post_init__(self) -> None:
        for name in ("connect_timeout", "read_timeout", "total_timeout"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{type(self).__name__}.{name} must be positive")
        object.__setattr__(
            self, "allow_private_hosts", frozenset(canonical_host_name(h) for h in self.allow_private_hosts)
        )
        object.__setattr__(self, "allow_private_networks", tuple(ip_network(n) for n in self.allow_private_networks))


class Connector:
    """Opens connections under OutboundRules; see the module docstring. `action` starts the messages of
    failures that concern the whole exchange ("Fetching", "Delivering to"). Keeps no per-connection
    state, so one instance may serve many threads."""

    def __init__(self, rules: OutboundRules, resolver: Resolver | None = None, *, action: str):
        self.rules = rules
        self._resolve = resolver or system_resolver
        self._action = action

    def check_scheme(self, target: Target) -> None:
        if target.scheme == "http" and not self.rules.allow_http:
            raise OutboundError("scheme_not_allowed", f"Refused {target.redacted}: only https is allowed.")

    def checked_addresses(self, target: Target) -> list[IPAddress]:
        """The addresses to connect to, each one allowed by the rules (one resolver call)."""
        if target.address is not None:
            addresses = [target.address]
        else:
            try:
                answers = self._resolve(target.host, target.port)
            except (OSError, UnicodeError) as exc:
                raise OutboundError("dns_failed", f"Could not resolve {target.host}.", transient=True) from exc
            try:
                addresses = list(dict.fromkeys(parse_address(answer) for answer in answers))
            except ValueError as exc:
                raise OutboundError("dns_failed", f"Resolving {target.host} gave a malformed address.") from exc
            if not addresses:
                raise OutboundError("dns_failed", f"{target.host} resolved to no address.", transient=True)
        host_exempt = target.host in self.rules.allow_private_hosts
        for address in addresses:
            if is_cloud_metadata(address):
                reason: str | None = "cloud metadata endpoint"
            elif host_exempt or in_networks(address, self.rules.allow_private_networks):
                continue
            else:
                reason = refusal_reason(address)
            if reason is not None:
                raise OutboundError(
                    "ssrf_refused",
                    f"Refused to connect to {target.redacted}: address {address} is not allowed ({reason}).",
                )
        return addresses

    def connect(self, target: Target, deadline: Deadline) -> HTTPConnection:
        """A connection to the first checked address of `target` that accepts one, in the resolver's
        order, watched by `deadline`; from here on each socket read waits at most read_timeout."""
        addresses = self.checked_addresses(target)
        failure: Exception | None = None
        for address in addresses:
            if deadline.expired:
                break
            connection = self._new_connection(target, address, deadline)
            try:
                connection.connect()
            except (urllib3.exceptions.NewConnectionError, urllib3.exceptions.ConnectTimeoutError) as exc:
                # Nothing was sent yet, so trying the next checked address is safe.
                failure = exc
                connection.close()
                continue
            except TimeoutError:  # the TLS handshake stalled: still part of connecting
                failure = urllib3.exceptions.ConnectTimeoutError("TLS handshake timed out")
                connection.close()
                continue
            except NETWORK_ERRORS as exc:
                connection.close()
                raise self.failure(exc, target, deadline) from exc
            deadline.watch(connection.sock)
            connection.timeout = self.rules.read_timeout
            return connection
        raise self.failure(failure or TimeoutError(), target, deadline)

    def _new_connection(self, target: Target, address: IPAddress, deadline: Deadline) -> HTTPConnection:
        connect_timeout = min(self.rules.connect_timeout, deadline.remaining())
        if target.scheme == "http":
            return HTTPConnection(str(address), target.port, timeout=connect_timeout)
        # The socket goes to the checked address; SNI and the certificate check use the host name.
        return HTTPSConnection(
            str(address),
            target.port,
            timeout=connect_timeout,
            server_hostname=target.host,
            assert_hostname=target.host,
            cert_reqs="CERT_REQUIRED",
            ca_certs=self.rules.tls_ca_file,
        )

    def failure(self, exc: BaseException, target: Target, deadline: Deadline) -> OutboundError:
        """The OutboundError for what connecting, sending or reading raised."""
        where = target.redacted
        rules = self.rules
        if deadline.expired:
            return OutboundError(
                "timeout", f"{self._action} {where} did not finish within {rules.total_timeout:g} s.", transient=True
            )
        if isinstance(exc, urllib3.exceptions.NewConnectionError):
            return OutboundError("connection_failed", f"Could not connect to {where}.", transient=True)
        if isinstance(exc, urllib3.exceptions.ConnectTimeoutError):
            return OutboundError(
                "timeout", f"Connecting to {where} took more than {rules.connect_timeout:g} s.", transient=True
            )
        if isinstance(exc, (urllib3.exceptions.ReadTimeoutError, TimeoutError)):
            return OutboundError(
                "timeout", f"{where} sent nothing for more than {rules.read_timeout:g} s.", transient=True
            )
        if isinstance(exc, (ssl.SSLCertVerificationError, CertificateError)):
            return OutboundError("tls_failed", f"The TLS certificate of {where} could not be verified.")
        if isinstance(exc, (http.client.IncompleteRead, urllib3.exceptions.ProtocolError, OSError)):
            return OutboundError("connection_failed", f"The connection to {where} failed.", transient=True)
        return OutboundError("bad_response", f"{where} did not answer with valid HTTP.")


class Deadline:
    """A whole exchange's time budget, enforced by shutting down the socket in use when it runs out."""

    def __init__(self, seconds: float):
        self.ends_at = time.monotonic() + seconds
        self._lock = threading.Lock()
        self._socket: socket.socket | None = None
        self._fired = False
        self.finished = False

    def __enter__(self) -> Deadline:
        _watchdog().watch(self)
        return self

    def __exit__(self, *exc_info: object) -> None:
        with self._lock:
            self.finished = True
            self._socket = None
        _watchdog().forget()

    @property
    def expired(self) -> bool:
        return self._fired or time.monotonic() >= self.ends_at

    def remaining(self) -> float:
        return max(0.0, self.ends_at - time.monotonic())

    def watch(self, sock: socket.socket) -> None:
        """Make `sock` the socket to shut down when time runs out (at once if it already has)."""
        with self._lock:
            self._socket = sock
            if self._fired:
                _shutdown_quietly(sock)

    def fire(self) -> None:
        with self._lock:
            if self.finished:
                return
            self._fired = True
            if self._socket is not None:
                _shutdown_quietly(self._socket)


class _Watchdog:
    """One thread per process that fires every exchange's deadline when it comes.

    A timer thread per exchange would do the same, but starting a thread waits for the new thread to get
    the GIL, which under load (eight downloads hashing and writing at once) costs milliseconds per
    fetch. Deadlines that finish in time stay in the heap until they reach its top, or until finished
    ones make up most of it."""

    _COMPACT_AT = 256

    def __init__(self):
        self._condition = threading.Condition()
        self._heap: list[tuple[float, int, Deadline]] = []
        self._order = itertools.count()  # ties on the time never compare two deadlines
        self._live = 0
        self._thread = threading.Thread(target=self._run, name="fetch-deadlines", daemon=True)
        self._thread.start()

    def watch(self, deadline: Deadline) -> None:
        with self._condition:
            self._live += 1
            if len(self._heap) >= self._COMPACT_AT and len(self._heap) > 2 * self._live:
                self._heap = [entry for entry in self._heap if not entry[2].finished]
                heapq.heapify(self._heap)
            heapq.heappush(self._heap, (deadline.ends_at, next(self._order), deadline))
            if self._heap[0][2] is deadline:
                self._condition.notify()  # the new deadline comes before the one being waited for

    def forget(self) -> None:
        with self._condition:
            self._live -= 1

    def _run(self) -> None:
        with self._condition:
            while True:
                now = time.monotonic()
                while self._heap and (self._heap[0][2].finished or self._heap[0][0] <= now):
                    heapq.heappop(self._heap)[2].fire()
                self._condition.wait(self._heap[0][0] - now if self._heap else None)


_watchdogs: dict[int, _Watchdog] = {}
_watchdogs_lock = threading.Lock()


def _watchdog() -> _Watchdog:
    """This process' watchdog (a forked child gets its own: threads do not survive fork())."""
    pid = os.getpid()
    watchdog = _watchdogs.get(pid)
    if watchdog is None:
        with _watchdogs_lock:
            watchdog = _watchdogs.get(pid)
            if watchdog is None:
                _watchdogs.clear()
                watchdog = _watchdogs[pid] = _Watchdog()
    return watchdog


def _shutdown_quietly(sock: socket.socket) -> None:
    # shutdown(), unlike close(), wakes a thread blocked in recv() on the same socket. An OSError
    # means the socket is already closed or reset: nothing is left to interrupt.
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
