"""The fetcher's refusals that happen before any connection: addresses, URLs, schemes, DNS, configuration."""

from __future__ import annotations

import io
import pickle
import socket
import time
from ipaddress import ip_address, ip_network

import pytest

from tests.fixtures.media_server import StaticResolver
from webhook_service.media.fetcher import FetchError, FetchPolicy, SafeFetcher
from webhook_service.model.credentials import Credentials
from webhook_service.network.addresses import in_networks, is_cloud_metadata, refusal_reason

REFUSED_ADDRESSES = [
    "0.0.0.0",
    "0.1.2.3",
    "10.0.0.1",
    "100.64.0.1",
    "100.100.100.200",
    "127.0.0.1",
    "127.255.255.254",
    "169.254.169.254",
    "169.254.1.1",
    "172.16.0.1",
    "172.31.255.255",
    "192.0.0.8",
    "192.0.2.1",
    "192.88.99.1",
    "192.168.1.1",
    "198.18.0.1",
    "198.19.255.255",
    "198.51.100.7",
    "203.0.113.9",
    "224.0.0.1",
    "239.255.255.250",
    "240.0.0.1",
    "255.255.255.255",
    "::",
    "::1",
    "::ffff:127.0.0.1",
    "::ffff:10.0.0.1",
    "::ffff:169.254.169.254",
    "::127.0.0.1",
    "::10.0.0.1",
    "64:ff9b::7f00:1",
    "64:ff9b::a9fe:a9fe",
    "64:ff9b:1::808:808",
    "2002:7f00:1::1",
    "2002:a00:1::",
    "2001:0:4136:e378:8000:63bf:3fff:fdd2",  # Teredo whose client is 192.0.2.45 (documentation)
    "2001:0:a00:1::1",  # Teredo whose server is 10.0.0.1
    "100::1",
    "2001:2::1",
    "2001:db8::1",
    "3fff::1",
    "5f00::1",
    "fc00::1",
    "fd00:ec2::254",
    "fe80::1",
    "fe80::1%eth0",
    "fec0::1",
    "ff02::1",
    "4000::1",  # outside 2000::/3: not allocated for global unicast
]

GLOBAL_ADDRESSES = [
    "1.1.1.1",
    "8.8.8.8",
    "93.184.216.34",
    "2606:4700:4700::1111",
    "2001:4860:4860::8888",
    "::ffff:8.8.8.8",
    "64:ff9b::808:808",
    "2002:808:808::1",
    "2001:0:4136:e378:8000:63bf:f7f7:f7f7",  # Teredo: server 65.54.227.120, client 8.8.8.8
]


def refusal(text: str) -> str | None:
    return refusal_reason(ip_address(text.split("%")[0]))


@pytest.mark.parametrize("address", REFUSED_ADDRESSES)
def test_non_global_addresses_are_refused(address: str) -> None:
    assert refusal(address) is not None


@pytest.mark.parametrize("address", GLOBAL_ADDRESSES)
def test_global_unicast_addresses_are_allowed(address: str) -> None:
    assert refusal(address) is None


def test_embedded_ipv4_forms_name_the_form_and_the_reason() -> None:
    assert refusal("::ffff:127.0.0.1") == "IPv4-mapped address of 127.0.0.1: loopback"
    assert refusal("64:ff9b::a00:1") == "NAT64 address of 10.0.0.1: private network"
    assert refusal("2002:c0a8:101::") == "6to4 address of 192.168.1.1: private network"


def test_cloud_metadata_is_recognized_in_embedded_forms() -> None:
    for text in ("169.254.169.254", "fd00:ec2::254", "::ffff:169.254.169.254", "64:ff9b::a9fe:a9fe"):
        assert is_cloud_metadata(ip_address(text)), text
    assert not is_cloud_metadata(ip_address("169.254.1.1"))


def test_network_exemptions_cover_embedded_ipv4() -> None:
    private = (ip_network("10.0.0.0/8"),)
    assert in_networks(ip_address("10.1.2.3"), private)
    assert in_networks(ip_address("::ffff:10.1.2.3"), private)
    assert not in_networks(ip_address("11.0.0.1"), private)
    assert not in_networks(ip_address("::1"), private)


# Refusals through fetch(): none of them may reach the network or the resolver.


def refusing_resolver(host: str, port: int) -> list[str]:
    raise AssertionError(f"the resolver must not be asked about {host}")


def fetch_error(url: str, policy: FetchPolicy | None = None, resolver=refusing_resolver, **kwargs) -> FetchError:
    fetcher = SafeFetcher(policy or FetchPolicy(max_bytes=1000, allow_http=True), resolver)
    started = time.monotonic()
    with pytest.raises(FetchError) as caught:
        fetcher.fetch(url, io.BytesIO(), **kwargs)
    assert time.monotonic() - started < 1.0
    return caught.value


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/",
        "http://10.0.0.1/media.jpg",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/",
        "http://[::ffff:127.0.0.1]/",
        "http://[::ffff:7f00:1]/",
        "http://0.0.0.0/",
        "https://127.0.0.1:8443/x",
        "http://127.0.0.1./",
        "http://[fd00:ec2::254]/",
        "http://[fe80::1%25eth0]/",
    ],
)
def test_private_ip_literals_are_refused(url: str) -> None:
    error = fetch_error(url)
    assert (error.code, error.transient, error.http_status) == ("ssrf_refused", False, None)


@pytest.mark.parametrize(
    "url",
    [
        "http://2130706433/",
        "http://0x7f.1/",
        "http://0x7f000001/",
        "http://0177.0.0.1/",
        "http://127.1/",
        "http://127.0.1/",
        "http://1.2.3.4.5/",
        "http://example.0x10/",
        "http://134744072/",  # 8.8.8.8 spelled as one number: refused too, spelling is not checked for intent
    ],
)
def test_non_canonical_numeric_hosts_are_refused(url: str) -> None:
    error = fetch_error(url)
    assert error.code == "ssrf_refused"
    assert "canonical dotted-quad" in error.message


@pytest.mark.parametrize(
    "url, scheme",
    [
        ("file:///etc/passwd", "file"),
        ("ftp://example.com/file.jpg", "ftp"),
        ("data:image/png;base64,iVBORw0KGgo=", "data"),
        ("gopher://example.com:70/_x", "gopher"),
        ("javascript:alert(1)", "javascript"),
        ("ws://example.com/socket", "ws"),
    ],
)
def test_schemes_other_than_http_and_https_are_refused(url: str, scheme: str) -> None:
    error = fetch_error(url)
    assert (error.code, error.transient) == ("scheme_not_allowed", False)
    assert f"{scheme}:" in error.message


def test_plain_http_is_refused_unless_the_policy_allows_it() -> None:
    error = fetch_error("http://media.example.com/a.jpg", FetchPolicy(max_bytes=1000))
    assert error.code == "scheme_not_allowed"


@pytest.mark.parametrize(
    "url",
    [
        "https://user:hunter2@media.example.com/a.jpg",
        "https://user@media.example.com/a.jpg",
        "https://media.example.com\\@127.0.0.1/a.jpg",
    ],
)
def test_urls_with_userinfo_are_refused_without_echoing_it(url: str) -> None:
    error = fetch_error(url)
    assert error.code == "invalid_url"
    assert "hunter2" not in error.message and "media.example.com" not in error.message


@pytest.mark.parametrize(
    "url",
    [
        "//media.example.com/a.jpg",
        "/relative/a.jpg",
        "https:///a.jpg",
        "https://media.example.com:99999/a.jpg",
        "https://media.example.com:0/a.jpg",
        "https://media example.com/a.jpg",
        "https://media.example.com/a b.jpg",
        "https://%31%32%37.0.0.1/",
        "https://-bad-.example.com/",
        "https://[not-ipv6]/",
        "https://media.example.com\x00.evil/",
    ],
)
def test_malformed_urls_are_invalid(url: str) -> None:
    assert fetch_error(url).code == "invalid_url"


def test_a_host_with_any_private_address_is_refused() -> None:
    resolver = StaticResolver({"mixed.example.com": ["8.8.8.8", "10.0.0.1"]})
    error = fetch_error("https://mixed.example.com/a.jpg", resolver=resolver)
    assert error.code == "ssrf_refused"
    assert "10.0.0.1" in error.message and "private network" in error.message
    assert resolver.calls == ["mixed.example.com"]


def test_cloud_metadata_stays_refused_despite_exemptions() -> None:
    policy = FetchPolicy(
        max_bytes=1000,
        allow_http=True,
        allow_private_hosts=frozenset({"metadata.internal"}),
        allow_private_networks=(ip_network("169.254.0.0/16"), ip_network("fd00::/8")),
    )
    resolver = StaticResolver({"metadata.internal": ["169.254.169.254"]})
    for url in ("http://metadata.internal/", "http://169.254.169.254/", "http://[fd00:ec2::254]/"):
        error = fetch_error(url, policy, resolver)
        assert error.code == "ssrf_refused" and "cloud metadata" in error.message, url


def test_dns_failure_is_transient() -> None:
    error = fetch_error("https://missing.example.com/a.jpg", resolver=StaticResolver({}))
    assert (error.code, error.transient) == ("dns_failed", True)


def test_an_empty_dns_answer_is_a_dns_failure() -> None:
    error = fetch_error("https://empty.example.com/a.jpg", resolver=StaticResolver({"empty.example.com": []}))
    assert (error.code, error.transient) == ("dns_failed", True)


def test_messages_show_no_query_string() -> None:
    error = fetch_error("http://10.0.0.1/media/a.jpg?Signature=s3cr3t&token=abc")
    assert "http://10.0.0.1/media/a.jpg" in error.message
    assert "s3cr3t" not in error.message and "token" not in error.message


def test_default_resolver_failure_is_a_dns_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_dns(*args: object, **kwargs: object) -> list:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    fetcher = SafeFetcher(FetchPolicy(max_bytes=10))
    with pytest.raises(FetchError) as caught:
        fetcher.fetch("https://media.example.com/a.jpg", io.BytesIO())
    assert caught.value.code == "dns_failed"


# Credentials and policy configuration.


def test_credentials_apply_to_exact_hosts_and_wildcard_subdomains() -> None:
    credentials = Credentials({"Authorization": "Basic eA=="}, frozenset({"API.Twilio.com", "*.media.example"}))
    assert credentials.applies_to("api.twilio.com")
    assert credentials.applies_to("API.TWILIO.COM.")
    assert credentials.applies_to("cdn.media.example")
    assert credentials.applies_to("a.b.media.example")
    assert not credentials.applies_to("media.example")
    assert not credentials.applies_to("evilmedia.example")
    assert not credentials.applies_to("api.twilio.com.evil.example")
    assert not credentials.applies_to("twilio.com")


def test_credentials_keep_secrets_out_of_repr() -> None:
    credentials = Credentials({"Authorization": "Basic c2VjcmV0"}, frozenset({"api.twilio.com"}))
    assert "c2VjcmV0" not in repr(credentials)


def test_credentials_refuse_a_bare_wildcard_or_a_single_string() -> None:
    with pytest.raises(ValueError):
        Credentials({"Authorization": "x"}, frozenset({"*"}))
    with pytest.raises(TypeError):
        Credentials({"Authorization": "x"}, "api.twilio.com")  # type: ignore[arg-type]


def test_policy_normalizes_exemptions_from_configuration_strings() -> None:
    policy = FetchPolicy(
        max_bytes=1,
        allow_private_hosts=frozenset({"Media.Internal."}),
        allow_private_networks=("10.0.0.0/8",),  # type: ignore[arg-type]  # as configuration gives them
    )
    assert policy.allow_private_hosts == frozenset({"media.internal"})
    assert policy.allow_private_networks == (ip_network("10.0.0.0/8"),)


@pytest.mark.parametrize(
    "settings",
    [{"max_bytes": -1}, {"max_redirects": -1}, {"total_timeout": 0}, {"allow_private_networks": ("10.0.0.1/8",)}],
)
def test_policy_refuses_bad_settings(settings: dict) -> None:
    with pytest.raises(ValueError):
        FetchPolicy(**{"max_bytes": 1, **settings})


def test_the_default_resolver_is_the_system_one_and_is_checked_too() -> None:
    error = fetch_error("http://localhost/", resolver=None)
    assert error.code == "ssrf_refused" and "loopback" in error.message


def test_fetch_errors_survive_pickling() -> None:
    error = pickle.loads(pickle.dumps(FetchError("http_error", "HTTP 503.", transient=True, http_status=503)))
    assert (error.code, error.message, error.transient, error.http_status) == ("http_error", "HTTP 503.", True, 503)
