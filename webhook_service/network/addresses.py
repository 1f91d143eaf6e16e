"""Which IP addresses outbound requests (media downloads, webhook deliveries) may connect to.

Only globally routable unicast addresses are acceptable destinations for a URL that came from a
webhook payload or an API caller. The tables below name every refused range with the reason operators
will read. They are explicit rather than delegated to `ipaddress.is_global` alone, because what the
standard library considers global changes between Python versions; `is_global` is still consulted
last, as a safety net for registry entries the tables do not list.

IPv6 forms that carry an IPv4 address (IPv4-mapped, IPv4-compatible, well-known NAT64, 6to4, Teredo)
are judged by the IPv4 address they carry: a packet to `::ffff:127.0.0.1` or `64:ff9b::a00:1` ends up
at the embedded IPv4 host. They are not refused outright because an IPv6-only deployment behind
DNS64 sees every IPv4-only media host as `64:ff9b::a.b.c.d`. The local-use NAT64 prefix
`64:ff9b:1::/48` has no fixed place for the IPv4 address and is never global, so it is refused.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address

IPAddress = IPv4Address | IPv6Address
IPNetwork = IPv4Network | IPv6Network

# Instance metadata endpoints hand out cloud credentials: refused even when an exemption
# (an allowed host name or network) would otherwise cover them.
CLOUD_METADATA_ADDRESSES: frozenset[IPAddress] = frozenset(
    ip_address(address)
    for address in (
        "169.254.169.254",  # AWS, GCP, Azure, OCI, OpenStack
        "169.254.170.2",  # AWS ECS task metadata
        "100.100.100.200",  # Alibaba Cloud
        "fd00:ec2::254",  # AWS over IPv6
    )
)

_REFUSED_IPV4: tuple[tuple[IPv4Network, str], ...] = tuple(
    (IPv4Network(network), reason)
    for network, reason in (
        ("0.0.0.0/8", "unspecified ('this network')"),
        ("10.0.0.0/8", "private network"),
        ("100.64.0.0/10", "carrier-grade NAT (shared address space)"),
        ("127.0.0.0/8", "loopback"),
        ("169.254.0.0/16", "link-local"),
        ("172.16.0.0/12", "private network"),
        ("192.0.0.0/24", "IETF protocol assignments"),
        ("192.0.2.0/24", "documentation range"),
        ("192.88.99.0/24", "reserved (former 6to4 relay anycast)"),
        ("192.168.0.0/16", "private network"),
        ("198.18.0.0/15", "benchmarking range"),
        ("198.51.100.0/24", "documentation range"),
        ("203.0.113.0/24", "documentation range"),
        ("224.0.0.0/4", "multicast"),
        ("240.0.0.0/4", "reserved (including broadcast 255.255.255.255)"),
    )
)

_REFUSED_IPV6: tuple[tuple[IPv6Network, str], ...] = tuple(
    (IPv6Network(network), reason)
    for network, reason in (
        ("::/128", "unspecified"),
        ("::1/128", "loopback"),
        ("64:ff9b:1::/48", "local-use NAT64"),
        ("100::/64", "discard-only range"),
        ("2001:2::/48", "benchmarking range"),
        ("2001:db8::/32", "documentation range"),
        ("3fff::/20", "documentation range"),
        ("5f00::/16", "segment routing (SRv6) identifiers"),
        ("fc00::/7", "unique local (private network)"),
        ("fe80::/10", "link-local"),
        ("fec0::/10", "site-local (deprecated)"),
        ("ff00::/8", "multicast"),
    )
)

# Everything routable on the IPv6 internet is allocated from 2000::/3.
_IPV6_GLOBAL_UNICAST = IPv6Network("2000::/3")

_IPV4_MAPPED = IPv6Network("::ffff:0:0/96")  # ::ffff:a.b.c.d
_IPV4_COMPATIBLE = IPv6Network("::/96")  # ::a.b.c.d
_NAT64_WELL_KNOWN = IPv6Network("64:ff9b::/96")  # 64:ff9b::a.b.c.d
_SIX_TO_FOUR = IPv6Network("2002::/16")  # 2002:AABB:CCDD::/48, the IPv4 address in bits 16-47
_TEREDO = IPv6Network("2001::/32")  # 2001:0:server IPv4:flags:port:client IPv4 with every bit inverted


def parse_address(text: str) -> IPAddress:
    """An address as a resolver returns it; an IPv6 zone index (`fe80::1%eth0`) is dropped."""
    return ip_address(text.split("%", 1)[0])


def embedded_ipv4(address: IPAddress) -> tuple[str, tuple[IPv4Address, ...]] | None:
    """For an IPv6 form that carries IPv4 addresses: its name and the IPv4 addresses; else None."""
    if isinstance(address, IPv4Address):
        return None
    bits = int(address)
    low_32_bits = IPv4Address(bits & 0xFFFFFFFF)
    if address in _IPV4_MAPPED:
        return "IPv4-mapped address", (low_32_bits,)
    if address.is_unspecified or address.is_loopback:
        return None  # :: and ::1 lie inside ::/96 but are IPv6's own unspecified and loopback
    if address in _IPV4_COMPATIBLE:
        return "IPv4-compatible address", (low_32_bits,)
    if address in _NAT64_WELL_KNOWN:
        return "NAT64 address", (low_32_bits,)
    if address in _SIX_TO_FOUR:
        return "6to4 address", (IPv4Address((bits >> 80) & 0xFFFFFFFF),)
    if address in _TEREDO:
        server, client = IPv4Address((bits >> 64) & 0xFFFFFFFF), IPv4Address(~bits & 0xFFFFFFFF)
        return "Teredo address", (server, client)
    return None


def is_cloud_metadata(address: IPAddress) -> bool:
    embedded = embedded_ipv4(address)
    carried = embedded[1] if embedded else ()
    return any(candidate in CLOUD_METADATA_ADDRESSES for candidate in (address, *carried))


def refusal_reason(address: IPAddress) -> str | None:
    """Why no outbound request may connect to `address`, or None for a globally routable unicast address."""
    if address in CLOUD_METADATA_ADDRESSES:
        return "cloud metadata endpoint"
    if isinstance(address, IPv4Address):
        return _ipv4_refusal_reason(address)
    embedded = embedded_ipv4(address)
    if embedded is not None:
        form, carried = embedded
        for ipv4 in carried:
            reason = refusal_reason(ipv4)
            if reason is not None:
                return f"{form} of {ipv4}: {reason}"
        return None
    for network, reason in _REFUSED_IPV6:
        if address in network:
            return reason
    if address not in _IPV6_GLOBAL_UNICAST:
        return "outside the IPv6 global unicast range"
    if not address.is_global:
        return "not globally routable"
    return None


def in_networks(address: IPAddress, networks: tuple[IPNetwork, ...]) -> bool:
    """True when `address`, or every IPv4 address an IPv6 form carries, lies in one of `networks`."""

    def covered(candidate: IPAddress) -> bool:
        return any(candidate in network for network in networks)

    embedded = embedded_ipv4(address)
    return covered(address) or (embedded is not None and all(covered(ipv4) for ipv4 in embedded[1]))


def _ipv4_refusal_reason(address: IPv4Address) -> str | None:
    for network, reason in _REFUSED_IPV4:
        if address in network:
            return reason
    if not address.is_global:
        return "not globally routable"
    return None
