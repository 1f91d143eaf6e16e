"""Provider adapters, one module each, registered by name (the <provider> part of the webhook URL).

The registry is also where connections are checked against the adapters: a connection must name a
registered provider, and its options must be ones that adapter takes.
"""

from __future__ import annotations

from collections.abc import Iterable

from webhook_service.config.model import ConfigError, Connection
from webhook_service.providers.approvedcontact import ApprovedContactAdapter
from webhook_service.providers.base import ParseFailed, ProviderAdapter, VerificationFailed, WebhookRequest
from webhook_service.providers.bird import BirdAdapter
from webhook_service.providers.mapping import MappingAdapter
from webhook_service.providers.plivo import PlivoAdapter
from webhook_service.providers.protexting import ProTextingAdapter
from webhook_service.providers.standard import StandardAdapter
from webhook_service.providers.telnyx import TelnyxAdapter
from webhook_service.providers.twilio import TwilioAdapter
from webhook_service.providers.vonage import VonageAdapter

ADAPTERS: dict[str, ProviderAdapter] = {
    adapter.name: adapter
    for adapter in (
        StandardAdapter(),
        TwilioAdapter(),
        PlivoAdapter(),
        TelnyxAdapter(),
        BirdAdapter(),
        VonageAdapter(),
        ApprovedContactAdapter(),
        MappingAdapter(),
        ProTextingAdapter(),
    )
}


def check_connections(connections: Iterable[Connection]) -> None:
    """ConfigError (one line, naming the connection) unless every connection names a registered provider
    and gives it options it takes."""
    for index, connection in enumerate(connections):
        adapter = ADAPTERS.get(connection.provider)
        if adapter is None:
            raise ConfigError(
                f"connections[{index}].provider: unknown provider {connection.provider!r} "
                f"(known: {', '.join(sorted(ADAPTERS))})"
            )
        problem = adapter.validate_options(connection)
        if problem:
            raise ConfigError(f"connections[{index}] ({connection.key}): {problem}")


__all__ = ["ADAPTERS", "ParseFailed", "ProviderAdapter", "VerificationFailed", "WebhookRequest", "check_connections"]
