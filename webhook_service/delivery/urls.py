"""Endpoint URLs follow the SSRF rules of media downloads (network/): https only unless
`delivery.allow_http`; loopback, private, link-local and metadata addresses refused unless
`delivery.allow_private_networks` covers them (metadata never); no credentials in the URL. They are
checked when an endpoint is registered and again at every connection, since DNS answers change."""

from __future__ import annotations

from ipaddress import ip_network

from webhook_service.config.model import DeliverySettings
from webhook_service.network.connections import Connector, OutboundRules, Resolver
from webhook_service.network.targets import OutboundError, Target, parse_target

ENDPOINT_URL = "endpoint URL"
MAX_URL_LENGTH = 2048
# Connecting gets at most this long of the attempt's timeout: a host that accepts no connection within
# it is down, and the rest of the budget is for the receiver's answer.
_CONNECT_SECONDS = 5.0


def delivery_rules(settings: DeliverySettings) -> OutboundRules:
    timeout = settings.timeout_seconds
    return OutboundRules(
        allow_http=settings.allow_http,
        connect_timeout=min(_CONNECT_SECONDS, timeout),
        read_timeout=timeout,
        total_timeout=timeout,
        allow_private_networks=tuple(ip_network(n, strict=False) for n in settings.allow_private_networks),
        tls_ca_file=settings.tls_ca_file,
    )


def endpoint_target(connector: Connector, url: str) -> Target:
    """`url` read as an endpoint URL, its scheme allowed by the rules; raises OutboundError."""
    if len(url) > MAX_URL_LENGTH:
        raise OutboundError("invalid_url", f"The {ENDPOINT_URL} is longer than {MAX_URL_LENGTH} characters.")
    target = parse_target(url, ENDPOINT_URL)
    connector.check_scheme(target)
    return target


class EndpointUrls:
    """The check made when an endpoint is registered or its URL changed."""

    def __init__(self, rules: OutboundRules, resolver: Resolver | None = None):
        self._connector = Connector(rules, resolver, action="Delivering to")

    def check_form(self, url: str) -> None:
        """Raise OutboundError unless `url` may be an endpoint's as written (its host is not resolved)."""
        endpoint_target(self._connector, url)

    def check(self, url: str) -> str:
        """`url` without surrounding whitespace, or OutboundError when it may not be an endpoint. A host
        name that does not resolve (yet) is accepted: every delivery resolves and checks it again."""
        target = endpoint_target(self._connector, url)
        try:
            self._connector.checked_addresses(target)
        except OutboundError as error:
            if error.code != "dns_failed":
                raise
        return url.strip()
