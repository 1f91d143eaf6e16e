"""Credentials for downloading a provider's media: request headers, and the only hosts allowed to receive
them. Adapters make them; the fetcher sends them to those hosts and nowhere else."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType


def canonical_host_name(host: str) -> str:
    """Lower case, without a trailing dot or IPv6 brackets: the form hosts are compared in."""
    return host.strip().strip("[]").lower().rstrip(".")


@dataclass(frozen=True)
class Credentials:
    """Request headers that authenticate media downloads, and the hosts allowed to receive them."""

    headers: Mapping[str, str] = field(repr=False)  # secrets: kept out of logs and tracebacks
    hosts: frozenset[str]  # exact host names, or "*.example.com" for any subdomain (not the apex)

    def __post_init__(self) -> None:
        if isinstance(self.hosts, str):
            raise TypeError("Credentials.hosts is a set of host names, not one string")
        object.__setattr__(self, "headers", MappingProxyType(dict(self.headers)))
        hosts = frozenset(canonical_host_name(host) for host in self.hosts)
        if any(host in ("", "*", "*.") for host in hosts):
            raise ValueError("Credentials.hosts entries must name a host or '*.domain'")
        object.__setattr__(self, "hosts", hosts)

    def applies_to(self, host: str) -> bool:
        host = canonical_host_name(host)
        return any(
            host.endswith(pattern[1:]) if pattern.startswith("*.") else host == pattern for pattern in self.hosts
        )
