"""The fetcher against the loopback media server: bodies, limits, timeouts, redirects, TLS, credentials."""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import socket
import threading
import time
import tracemalloc
import zlib
from typing import Any

import pytest

from tests.fixtures.media_server import (
    MEDIA_HOST,
    OTHER_HOST,
    MediaServer,
    StaticResolver,
    loopback_policy,
    loopback_resolver,
)
from tests.fixtures.services import free_port
from webhook_service.media.fetcher import CHUNK_SIZE, FetchError, FetchPolicy, FetchResult, SafeFetcher
from webhook_service.model.credentials import Credentials

MiB = 1024 * 1024
TWILIO_LIKE = Credentials(
    {"Authorization": "Basic " + base64.b64encode(b"AC1:token").decode()}, frozenset({MEDIA_HOST})
)


def fetch(
    url: str, policy: FetchPolicy | None = None, resolver: Any = None, **kwargs: Any
) -> tuple[FetchResult, bytes]:
    sink = io.BytesIO()
    fetcher = SafeFetcher(policy or loopback_policy(), resolver or loopback_resolver())
    return fetcher.fetch(url, sink, **kwargs), sink.getvalue()


def fetch_error(url: str, policy: FetchPolicy | None = None, resolver: Any = None, **kwargs: Any) -> FetchError:
    with pytest.raises(FetchError) as caught:
        fetch(url, policy, resolver, **kwargs)
    return caught.value


class CountingSink(io.BytesIO):
    """Keeps only counts, so that memory measurements see the fetcher and not the sink."""

    def __init__(self) -> None:
        super().__init__()
        self.size = 0
        self.largest_write = 0

    def write(self, data: Any) -> int:
        self.size += len(data)
        self.largest_write = max(self.largest_write, len(data))
        return len(data)


# Successful downloads.


def test_downloads_the_body_with_its_size_hash_and_declared_type(media_server: MediaServer) -> None:
    body = b"\xff\xd8\xff" + bytes(range(256)) * 100
    url = media_server.serve("/cat.jpg", body, content_type="image/jpeg")
    result, received = fetch(url)
    assert received == body
    assert result == FetchResult(
        url=url,
        status=200,
        content_type="image/jpeg",
        size=len(body),
        sha256=hashlib.sha256(body).hexdigest(),
        redirects=(),
    )


def test_downloads_a_chunked_body(media_server: MediaServer) -> None:
    body = bytes(range(256)) * 50
    url = media_server.serve("/chunked.jpg", body, chunked=True)
    result, received = fetch(url)
    assert received == body and result.size == len(body)
    assert fetch_error(url, loopback_policy(max_bytes=len(body) - 1)).code == "too_large"


def test_sends_only_its_own_headers_and_ignores_proxy_settings(
    media_server: MediaServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    dead_proxy = f"http://127.0.0.1:{free_port()}"
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.setenv(name, dead_proxy)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    url = media_server.serve("/headers.jpg", b"x")
    fetch(url)
    [request] = media_server.requests("/headers.jpg")
    assert request.target == "/headers.jpg"  # origin form: not a request addressed to a proxy
    assert request.headers == {
        "host": f"{MEDIA_HOST}:{media_server.http_port}",
        "user-agent": "webhook-service-media/1.0",
        "accept": "*/*",
        "accept-encoding": "identity",
    }


def test_writes_the_sink_in_bounded_chunks(media_server: MediaServer) -> None:
    url = media_server.serve("/big.bin", bytes(3 * MiB))
    sink = CountingSink()
    SafeFetcher(loopback_policy(), loopback_resolver()).fetch(url, sink)
    assert sink.size == 3 * MiB
    assert 0 < sink.largest_write <= CHUNK_SIZE


def test_tries_the_next_checked_address_when_one_refuses_connections(media_server: MediaServer) -> None:
    # Nothing listens on 127.0.0.2; the server is bound to 127.0.0.1 only.
    resolver = loopback_resolver({MEDIA_HOST: ["127.0.0.2", "127.0.0.1"]})
    url = media_server.serve("/second.jpg", b"second address")
    _, body = fetch(url, resolver=resolver)
    assert body == b"second address" and resolver.calls == [MEDIA_HOST]


# The byte cap counts decoded bytes.


def test_exactly_max_bytes_passes_and_one_more_is_too_large(media_server: MediaServer) -> None:
    media_server.serve("/exact.bin", bytes(1000))
    media_server.serve("/over.bin", bytes(1001))
    result, _ = fetch(media_server.url("/exact.bin"), loopback_policy(max_bytes=1000))
    assert result.size == 1000
    error = fetch_error(media_server.url("/over.bin"), loopback_policy(max_bytes=1000))
    assert (error.code, error.transient) == ("too_large", False)


def test_a_per_fetch_cap_overrides_the_policy(media_server: MediaServer) -> None:
    url = media_server.serve("/override.bin", bytes(200))
    assert fetch_error(url, loopback_policy(max_bytes=1000), max_bytes=199).code == "too_large"
    assert fetch(url, loopback_policy(max_bytes=10), max_bytes=200)[0].size == 200


def test_a_declared_length_over_the_cap_is_refused_before_reading(media_server: MediaServer) -> None:
    url = media_server.lying_length("/declared.bin", declared=50 * MiB, sent=10)
    assert fetch_error(url, loopback_policy(max_bytes=MiB)).code == "too_large"


def test_a_short_content_length_frames_the_body_whatever_follows(media_server: MediaServer) -> None:
    url = media_server.lying_length("/lying.bin", declared=1000, sent=50 * MiB)
    started = time.monotonic()
    result, body = fetch(url, loopback_policy(max_bytes=MiB))
    assert (result.size, len(body)) == (1000, 1000)
    assert time.monotonic() - started < 2


def test_an_endless_body_without_length_is_cut_after_the_cap(media_server: MediaServer) -> None:
    url = media_server.endless("/endless.bin")
    sink = CountingSink()
    started = time.monotonic()
    with pytest.raises(FetchError) as caught:
        SafeFetcher(loopback_policy(max_bytes=MiB), loopback_resolver()).fetch(url, sink)
    assert caught.value.code == "too_large"
    assert sink.size <= MiB
    assert time.monotonic() - started < 2


def test_a_gzip_bomb_is_decoded_in_bounded_memory_and_refused(media_server: MediaServer) -> None:
    url = media_server.gzip_bomb("/bomb.jpg", decoded_size=10 * MiB)  # about 10 KB on the wire
    sink = CountingSink()
    fetcher = SafeFetcher(loopback_policy(max_bytes=4 * MiB), loopback_resolver())
    tracemalloc.start()
    try:
        with pytest.raises(FetchError) as caught:
            fetcher.fetch(url, sink)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert caught.value.code == "too_large"
    assert sink.size == 4 * MiB  # exactly the cap was accepted; the byte after it was the refusal
    assert peak < MiB  # a few read-sized pieces, never the 4 MiB cap, let alone the 10 MiB, at once


@pytest.mark.parametrize(
    "encoding, encode",
    [
        pytest.param("gzip", gzip.compress, id="gzip"),
        pytest.param("x-gzip", gzip.compress, id="x-gzip"),
        pytest.param("deflate", zlib.compress, id="deflate"),
        pytest.param(
            "gzip", lambda data: gzip.compress(data[:5000]) + gzip.compress(data[5000:]), id="gzip-two-members"
        ),
    ],
)
def test_a_compressed_body_sent_anyway_is_decoded(media_server: MediaServer, encoding: str, encode: Any) -> None:
    body = bytes(range(256)) * 400
    url = media_server.serve("/encoded.bin", encode(body), headers={"Content-Encoding": encoding})
    result, received = fetch(url)
    assert received == body
    assert (result.size, result.sha256) == (len(body), hashlib.sha256(body).hexdigest())


def test_the_cap_applies_to_decoded_bytes(media_server: MediaServer) -> None:
    url = media_server.serve("/small-on-wire.bin", gzip.compress(bytes(5000)), headers={"Content-Encoding": "gzip"})
    assert fetch_error(url, loopback_policy(max_bytes=4999)).code == "too_large"
    assert fetch(url, loopback_policy(max_bytes=5000))[0].size == 5000


@pytest.mark.parametrize(
    "body, encoding",
    [
        # Explicit ids: gzip output embeds a timestamp, and pytest-xdist workers must agree on test names.
        pytest.param(b"this is not gzip at all", "gzip", id="not-gzip"),
        pytest.param(gzip.compress(bytes(5000))[:-12], "gzip", id="truncated-gzip"),
        pytest.param(zlib.compress(b"data") + b"trailing", "deflate", id="deflate-with-trailing-data"),
        pytest.param(b"whatever", "br", id="brotli-unsupported"),
        pytest.param(gzip.compress(gzip.compress(b"x")), "gzip, gzip", id="stacked-codings-unsupported"),
    ],
)
def test_undecodable_or_unsupported_encodings_are_bad_responses(
    media_server: MediaServer, body: bytes, encoding: str
) -> None:
    url = media_server.serve("/broken.bin", body, headers={"Content-Encoding": encoding})
    error = fetch_error(url)
    assert (error.code, error.transient) == ("bad_response", False)


# Timeouts.


def test_the_total_timeout_stops_a_server_trickling_its_body(media_server: MediaServer) -> None:
    url = media_server.trickle("/trickle.jpg", interval=0.4)
    started = time.monotonic()
    error = fetch_error(url, loopback_policy(total_timeout=1.5, read_timeout=10))
    elapsed = time.monotonic() - started
    assert (error.code, error.transient) == ("timeout", True)
    assert 1.4 < elapsed < 3


def test_the_total_timeout_stops_a_server_trickling_its_headers(media_server: MediaServer) -> None:
    url = media_server.trickle("/trickle-headers.jpg", interval=0.4, in_headers=True)
    started = time.monotonic()
    error = fetch_error(url, loopback_policy(total_timeout=1.5, read_timeout=10))
    assert error.code == "timeout"
    assert time.monotonic() - started < 3


def test_the_total_timeout_holds_against_one_byte_every_two_seconds(media_server: MediaServer) -> None:
    url = media_server.trickle("/two-seconds.jpg", interval=2.0)
    started = time.monotonic()
    error = fetch_error(url, loopback_policy(total_timeout=1.5, read_timeout=10))
    assert error.code == "timeout"
    assert time.monotonic() - started < 3


def test_concurrent_fetches_each_stop_at_their_own_total_timeout(media_server: MediaServer) -> None:
    """A later, shorter deadline fires before an earlier, longer one that is already being waited for."""
    elapsed: dict[str, float] = {}
    codes: dict[str, str] = {}

    def timed(name: str, total: float) -> None:
        # A byte every 2 s: only the deadline firing, not the next byte, can end the short fetch in time.
        url = media_server.trickle(f"/trickle-{name}.jpg", interval=2.0)
        started = time.monotonic()
        codes[name] = fetch_error(url, loopback_policy(total_timeout=total, read_timeout=10)).code
        elapsed[name] = time.monotonic() - started

    long = threading.Thread(target=timed, args=("long", 2.5))
    long.start()
    time.sleep(0.2)
    timed("short", 0.6)
    long.join()
    assert codes == {"short": "timeout", "long": "timeout"}
    assert 0.5 < elapsed["short"] < 1.5
    assert 2.4 < elapsed["long"] < 4


def test_fetches_do_not_start_a_thread_each(media_server: MediaServer, monkeypatch) -> None:
    """Deadlines are kept by one watchdog thread per process: starting a thread per fetch costs
    milliseconds under load, waiting for the GIL."""
    url = media_server.serve("/small.jpg", b"\xff\xd8\xff" + b"x" * 1000)
    fetch(url, loopback_policy())  # the watchdog exists from here on
    started = []
    start = threading.Thread.start
    fetching = threading.current_thread()

    def recording_start(thread):
        if threading.current_thread() is fetching:  # not the media server's threads, one per request
            started.append(thread.name)
        return start(thread)

    monkeypatch.setattr(threading.Thread, "start", recording_start)
    for _ in range(20):
        fetch(url, loopback_policy())
    assert started == []


def test_the_read_timeout_bounds_each_wait_for_data(media_server: MediaServer) -> None:
    url = media_server.trickle("/silent.jpg", interval=5.0)
    started = time.monotonic()
    error = fetch_error(url, loopback_policy(read_timeout=0.3, total_timeout=10))
    assert (error.code, error.transient) == ("timeout", True)
    assert "0.3 s" in error.message
    assert time.monotonic() - started < 2


def test_the_connect_timeout_covers_a_stalled_tls_handshake() -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:  # accepts TCP, never speaks TLS
        url = f"https://{MEDIA_HOST}:{listener.getsockname()[1]}/a.jpg"
        started = time.monotonic()
        # The read and total timeouts are far off: only the connect timeout can end this within 10 s,
        # which leaves a loaded machine plenty of room over the 0.3 s.
        error = fetch_error(url, loopback_policy(connect_timeout=0.3, read_timeout=30, total_timeout=60))
    assert (error.code, error.transient) == ("timeout", True)
    assert "Connecting" in error.message and "0.3 s" in error.message
    assert time.monotonic() - started < 10


def test_a_refused_connection_is_transient() -> None:
    error = fetch_error(f"http://{MEDIA_HOST}:{free_port()}/a.jpg")
    assert (error.code, error.transient) == ("connection_failed", True)


# HTTP statuses.


@pytest.mark.parametrize(
    "status, transient",
    [
        (500, True),
        (502, True),
        (503, True),
        (429, True),
        (408, True),
        (400, False),
        (401, False),
        (403, False),
        (404, False),
        (410, False),
    ],
)
def test_http_errors_carry_the_status_and_whether_to_retry(
    media_server: MediaServer, status: int, transient: bool
) -> None:
    url = media_server.fail("/status.jpg", status)
    error = fetch_error(url)
    assert (error.code, error.transient, error.http_status) == ("http_error", transient, status)


def test_a_temporary_failure_then_success(media_server: MediaServer) -> None:
    url = media_server.fail("/flaky.jpg", 503, times=1, then=b"finally")
    assert fetch_error(url).transient
    assert fetch(url)[1] == b"finally"


@pytest.mark.parametrize("status", [204, 206, 304])
def test_statuses_without_media_are_bad_responses(media_server: MediaServer, status: int) -> None:
    url = media_server.serve("/odd.jpg", b"", status=status)
    error = fetch_error(url)
    assert (error.code, error.transient, error.http_status) == ("bad_response", False, status)


def test_error_messages_keep_secrets_in_the_query_out(media_server: MediaServer) -> None:
    media_server.fail("/private/a.jpg", 404)
    error = fetch_error(media_server.url("/private/a.jpg?X-Amz-Signature=s3cr3t&token=t0k3n"))
    assert media_server.url("/private/a.jpg") in error.message
    assert "s3cr3t" not in error.message and "t0k3n" not in error.message


# Redirects.


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_redirects_are_followed(media_server: MediaServer, status: int) -> None:
    media_server.redirect("/moved.jpg", media_server.url("/here.jpg"), status=status)
    media_server.serve("/here.jpg", b"here")
    result, body = fetch(media_server.url("/moved.jpg"))
    assert body == b"here"
    assert result.url == media_server.url("/here.jpg")
    assert result.redirects == (media_server.url("/moved.jpg"),)


def test_relative_locations_are_resolved_against_the_current_url(media_server: MediaServer) -> None:
    media_server.redirect("/a/b/start.jpg", "../c/next.jpg")
    media_server.redirect("/a/c/next.jpg", "/final.jpg?v=1")
    media_server.serve("/final.jpg", b"final")
    result, body = fetch(media_server.url("/a/b/start.jpg"))
    assert body == b"final"
    assert result.url == media_server.url("/final.jpg?v=1")
    assert len(result.redirects) == 2


def test_max_redirects_are_followed_and_no_more(media_server: MediaServer) -> None:
    for hop in range(10):
        media_server.redirect(f"/hop{hop}", f"/hop{hop + 1}")
    media_server.serve("/hop10", b"end")
    assert fetch(media_server.url("/hop7"))[1] == b"end"  # 3 redirects: the default limit
    media_server.reset()
    for hop in range(10):
        media_server.redirect(f"/hop{hop}", f"/hop{hop + 1}")
    error = fetch_error(media_server.url("/hop0"))
    assert (error.code, error.transient) == ("too_many_redirects", False)
    assert len(media_server.requests()) == 4  # the first URL and 3 redirects; nothing after
    assert fetch_error(media_server.url("/hop0"), loopback_policy(max_redirects=0)).code == "too_many_redirects"


def test_a_redirect_without_location_is_a_bad_response(media_server: MediaServer) -> None:
    url = media_server.serve("/nowhere.jpg", b"", status=302)
    assert fetch_error(url).code == "bad_response"


def test_a_redirect_to_another_scheme_is_refused(media_server: MediaServer) -> None:
    url = media_server.redirect("/to-file.jpg", "file:///etc/passwd")
    assert fetch_error(url).code == "scheme_not_allowed"


def test_a_redirect_to_a_loopback_literal_is_refused(media_server: MediaServer) -> None:
    media_server.serve("/secret", b"internal")
    url = media_server.redirect("/innocent.jpg", f"http://127.0.0.1:{media_server.http_port}/secret")
    error = fetch_error(url)
    assert (error.code, error.transient) == ("ssrf_refused", False)
    assert media_server.requests("/secret") == []


def test_a_redirect_to_a_host_resolving_privately_is_refused(media_server: MediaServer) -> None:
    resolver = loopback_resolver({"internal.example.com": ["10.1.2.3"]})
    url = media_server.redirect("/to-internal.jpg", "http://internal.example.com/admin")
    assert fetch_error(url, resolver=resolver).code == "ssrf_refused"
    assert resolver.calls == [MEDIA_HOST, "internal.example.com"]


def test_the_resolver_is_asked_once_per_hop(media_server: MediaServer) -> None:
    media_server.redirect("/one", "/two")
    media_server.redirect("/two", media_server.url("/three", host=OTHER_HOST))
    media_server.serve("/three", b"three")
    resolver = loopback_resolver()
    fetch(media_server.url("/one"), resolver=resolver)
    assert resolver.calls == [MEDIA_HOST, MEDIA_HOST, OTHER_HOST]


def test_connects_to_the_checked_address_without_a_second_lookup(
    media_server: MediaServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DNS rebinding: a later answer (here 10.0.0.1) must never be used for the connection."""
    answers = iter([["127.0.0.1"], ["10.0.0.1"]])

    def rebinding_resolver(host: str, port: int) -> list[str]:
        return next(answers)

    real_getaddrinfo = socket.getaddrinfo

    def numeric_only_getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        return real_getaddrinfo(host, *args, **{**kwargs, "flags": socket.AI_NUMERICHOST})

    monkeypatch.setattr(socket, "getaddrinfo", numeric_only_getaddrinfo)  # a name lookup would fail
    policy = loopback_policy(allow_private_hosts=frozenset(), allow_private_networks=("127.0.0.0/8",))
    media_server.serve("/rebind.jpg", b"checked address")
    _, body = fetch(media_server.url("/rebind.jpg", host="rebind.test"), policy, rebinding_resolver)
    assert body == b"checked address"
    assert next(answers) == ["10.0.0.1"]  # asked exactly once
    assert media_server.requests("/rebind.jpg")[0].headers["host"] == f"rebind.test:{media_server.http_port}"


def test_private_addresses_need_an_exemption(media_server: MediaServer) -> None:
    url = media_server.serve("/exempt.jpg", b"ok")
    plain = media_server.url("/exempt.jpg", host="plain.test")
    resolver = StaticResolver({"plain.test": ["127.0.0.1"]})
    error = fetch_error(plain, loopback_policy(allow_private_hosts=frozenset()), resolver)
    assert error.code == "ssrf_refused" and "loopback" in error.message
    assert fetch(plain, loopback_policy(allow_private_networks=("127.0.0.0/8",)), resolver)[1] == b"ok"
    assert fetch(plain, loopback_policy(allow_private_hosts=frozenset({"plain.test"})), resolver)[1] == b"ok"
    assert fetch(url)[1] == b"ok"


# TLS.


def test_https_checks_the_certificate_against_the_host_name(media_server: MediaServer) -> None:
    media_server.serve("/tls.jpg", b"over tls")
    policy = loopback_policy(tls_ca_file=media_server.ca_file)
    _, body = fetch(media_server.url("/tls.jpg", tls=True), policy)
    assert body == b"over tls"
    [request] = media_server.requests("/tls.jpg")
    assert request.tls and request.headers["host"] == f"{MEDIA_HOST}:{media_server.https_port}"


def test_https_refuses_a_certificate_for_another_name(media_server: MediaServer) -> None:
    media_server.serve("/tls.jpg", b"over tls")
    policy = loopback_policy(tls_ca_file=media_server.ca_file)
    error = fetch_error(media_server.url("/tls.jpg", host=OTHER_HOST, tls=True), policy)
    assert (error.code, error.transient) == ("tls_failed", False)
    assert media_server.requests("/tls.jpg") == []


def test_https_refuses_an_untrusted_certificate(media_server: MediaServer) -> None:
    media_server.serve("/tls.jpg", b"over tls")
    assert fetch_error(media_server.url("/tls.jpg", tls=True)).code == "tls_failed"


def test_https_never_redirects_to_http(media_server: MediaServer) -> None:
    media_server.serve("/plain.jpg", b"plain")
    media_server.redirect("/secure.jpg", media_server.url("/plain.jpg"))
    policy = loopback_policy(tls_ca_file=media_server.ca_file)  # allow_http=True, still refused
    error = fetch_error(media_server.url("/secure.jpg", tls=True), policy)
    assert (error.code, error.transient) == ("redirect_downgrade", False)
    assert media_server.requests("/plain.jpg") == []


def test_http_to_https_redirects_are_followed(media_server: MediaServer) -> None:
    media_server.serve("/upgraded.jpg", b"upgraded")
    media_server.redirect("/start.jpg", media_server.url("/upgraded.jpg", tls=True))
    result, body = fetch(media_server.url("/start.jpg"), loopback_policy(tls_ca_file=media_server.ca_file))
    assert body == b"upgraded" and result.url.startswith("https://")


# Credentials.


def test_credentials_go_to_the_host_they_apply_to(media_server: MediaServer) -> None:
    url = media_server.require_basic_auth("/media/ME1", "AC1", "token", b"picture")
    assert fetch(url, credentials=TWILIO_LIKE)[1] == b"picture"
    assert media_server.requests("/media/ME1")[0].headers["authorization"] == TWILIO_LIKE.headers["Authorization"]


def test_credentials_are_not_sent_to_other_hosts(media_server: MediaServer) -> None:
    media_server.require_basic_auth("/media/ME1", "AC1", "token", b"picture")
    error = fetch_error(media_server.url("/media/ME1", host=OTHER_HOST), credentials=TWILIO_LIKE)
    assert error.http_status == 401
    assert "authorization" not in media_server.requests("/media/ME1")[0].headers


def test_credentials_are_kept_on_a_same_origin_redirect(media_server: MediaServer) -> None:
    media_server.redirect("/media/ME2", "/media/ME2/content")
    media_server.require_basic_auth("/media/ME2/content", "AC1", "token", b"picture")
    assert fetch(media_server.url("/media/ME2"), credentials=TWILIO_LIKE)[1] == b"picture"


def test_credentials_are_dropped_after_a_cross_host_redirect(media_server: MediaServer) -> None:
    # Even a next host the credentials would apply to does not get them once the chain left the origin.
    both_hosts = Credentials(TWILIO_LIKE.headers, frozenset({MEDIA_HOST, OTHER_HOST}))
    media_server.redirect("/api/ME3", media_server.url("/cdn/ME3", host=OTHER_HOST))
    media_server.redirect("/cdn/ME3", media_server.url("/cdn/ME3/final", host=MEDIA_HOST))
    media_server.serve("/cdn/ME3/final", b"from the cdn")
    _, body = fetch(media_server.url("/api/ME3"), credentials=both_hosts)
    assert body == b"from the cdn"
    assert "authorization" in media_server.requests("/api/ME3")[0].headers
    assert "authorization" not in media_server.requests("/cdn/ME3")[0].headers
    assert "authorization" not in media_server.requests("/cdn/ME3/final")[0].headers


def test_credentials_cannot_override_the_request_framing(media_server: MediaServer) -> None:
    credentials = Credentials(
        {"Authorization": "Bearer k", "Accept-Encoding": "gzip", "Host": "evil.example"}, frozenset({MEDIA_HOST})
    )
    url = media_server.serve("/framing.jpg", b"x")
    fetch(url, credentials=credentials)
    headers = media_server.requests("/framing.jpg")[0].headers
    assert headers["accept-encoding"] == "identity"
    assert headers["host"] == f"{MEDIA_HOST}:{media_server.http_port}"
    assert headers["authorization"] == "Bearer k"
