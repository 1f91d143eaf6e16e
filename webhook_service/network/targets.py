"""Reading a URL that someone else chose (a media URL in a webhook, an endpoint URL from the API) into
the one form outbound requests use, or refusing it.

- http(s) only; whether plain http is allowed is the caller's rule (OutboundRules.allow_http).
- URLs carrying credentials (`user:pass@host`) are refused rather than stripped: silently dropping part
  of a URL would reach something other than what was named.
- A host that looks numeric must be a canonical dotted-quad IPv4 address: spellings such as
  `2130706433`, `0x7f.1`, `0177.0.0.1` or `127.1` are refused, not reinterpreted, because resolvers
  and HTTP libraries disagree about what they mean.
- Messages name at most scheme://host/path (`Target.redacted`), never a query string, which may carry
  signatures or tokens.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from ipaddress import IPv4Address
from urllib.parse import quote, urlsplit

from webhook_service.network.addresses import IPAddress, parse_address

DEFAULT_PORTS = {"http": 80, "https": 443}

_WHITESPACE_OR_CONTROL = re.compile(r"[\x00-\x20\x7f]")
_NON_ASCII = re.compile(r"[^\x00-\x7f]+")
_HOST_LABEL = r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?"
_HOST_NAME = re.compile(rf"{_HOST_LABEL}(?:\.{_HOST_LABEL})*")
# A last label like this makes URL parsers read the whole host as an IPv4 number (WHATWG URL).
_NUMERIC_LABEL = re.compile(r"0x[0-9a-f]*|[0-9]+")


class OutboundError(Exception):
    """An outbound request that was refused or did not succeed. `message` names at most
    scheme://host/path, never secrets; `transient` says whether trying again later may help."""

    def __init__(self, code: str, message: str, transient: bool = False, http_status: int | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.transient = transient
        self.http_status = http_status

    def __reduce__(self) -> tuple[type[OutboundError], tuple[str, str, bool, int | None]]:
        # Exceptions pickle their args (the message only); workers may pass this one between processes.
        return type(self), (self.code, self.message, self.transient, self.http_status)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.code!r}, {self.message!r}, transient={self.transient}, "
            f"http_status={self.http_status})"
        )


@dataclass(frozen=True)
class Target:
    """One URL, parsed and validated."""

    scheme: str
    host: str  # canonical form; IPv6 without brackets
    port: int
    path: str  # percent-encoded, never empty
    query: str
    address: IPAddress | None  # set when the host is an IP literal: nothing to resolve

    @property
    def origin(self) -> tuple[str, str, int]:
        return self.scheme, self.host, self.port

    @property
    def authority(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == DEFAULT_PORTS[self.scheme] else f"{host}:{self.port}"

    @property
    def request_target(self) -> str:
        return f"{self.path}?{self.query}" if self.query else self.path

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.authority}{self.request_target}"

    @property
    def redacted(self) -> str:
        """The URL without its query string, which may carry signatures or tokens."""
        return f"{self.scheme}://{self.authority}{self.path}"


def parse_target(url: str, what: str = "media URL") -> Target:
    """Validate an absolute http(s) URL; whether http is allowed here is the caller's decision. `what`
    names the URL in messages ("media URL", "endpoint URL")."""
    url = url.strip()
    if _WHITESPACE_OR_CONTROL.search(url):
        raise OutboundError("invalid_url", f"The {what} contains whitespace or control characters.")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise OutboundError("invalid_url", f"The {what} cannot be parsed.") from exc
    if not parts.scheme:
        raise OutboundError("invalid_url", f"The {what} is not absolute (it has no scheme).")
    if parts.scheme not in DEFAULT_PORTS:
        raise OutboundError("scheme_not_allowed", f"Only http(s) {what}s are allowed, not {parts.scheme}:.")
    if "@" in parts.netloc:
        raise OutboundError("invalid_url", f"{what[0].upper()}{what[1:]}s with embedded credentials are refused.")
    if port == 0:
        raise OutboundError("invalid_url", f"The {what} names port 0.")
    host, address = _parse_host(parts.hostname, what)
    return Target(
        scheme=parts.scheme,
        host=host,
        port=port or DEFAULT_PORTS[parts.scheme],
        path=_percent_encode_non_ascii(parts.path or "/"),
        query=_percent_encode_non_ascii(parts.query),
        address=address,
    )


def _parse_host(raw_host: str | None, what: str) -> tuple[str, IPAddress | None]:
    """The canonical host and, for an IP literal, its address."""
    if not raw_host:
        raise OutboundError("invalid_url", f"The {what} has no host.")
    host = raw_host.rstrip(".")
    if ":" in host:  # urlsplit lets a colon into the host only from a bracketed IPv6 literal
        try:
            address = parse_address(host)
        except ValueError as exc:
            raise OutboundError("invalid_url", f"The {what}'s IPv6 address is not valid.") from exc
        return str(address), address
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError as exc:
            raise OutboundError("invalid_url", f"The {what}'s host name is not valid.") from exc
    if len(host) > 253 or not _HOST_NAME.fullmatch(host):
        raise OutboundError("invalid_url", f"The {what}'s host name is not valid.")
    if _NUMERIC_LABEL.fullmatch(host.rsplit(".", 1)[-1]):
        try:
            return host, IPv4Address(host)
        except ValueError:
            raise OutboundError(
                "ssrf_refused", f"Refused {host}: a numeric host must be a canonical dotted-quad IPv4 address."
            ) from None
    return host, None


def _percent_encode_non_ascii(text: str) -> str:
    return _NON_ASCII.sub(lambda match: quote(match.group()), text)
