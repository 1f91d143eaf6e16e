"""Provider adapters, one module each, registered by name (the <provider> part of the webhook URL).

The registry is also where connections are checked against the adapters: a connection must name a
registered provider, and its options and secrets must be ones that adapter can use.
"""

from __future__ import annotations

from collections.abc import Sequence

from webhook_service.config.model import Connection
from webhook_service.config.problems import Places, numbered
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


def connection_problems(connections: Sequence[Connection], places: Places | None = None) -> list[str]:
    """One line per problem (naming the connection by its place in the configuration, see `numbered`)
    with a connection's provider, options or secrets: each must name a registered provider, give it
    options it takes and secrets its scheme can use."""
    problems = []
    for index, connection in numbered(connections, ("connections",), places):
        adapter = ADAPTERS.get(connection.provider)
        if adapter is None:
            problems.append(
                f"connections[{index}].provider: unknown provider {connection.provider!r} "
                f"(known: {', '.join(sorted(ADAPTERS))})"
            )
            continue
        found = (adapter.validate_options(connection), adapter.validate_secrets(connection))
        problems += [f"connections[{index}] ({connection.key}): {problem}" for problem in found if problem]
    return problems


__all__ = ["ADAPTERS", "ParseFailed", "ProviderAdapter", "VerificationFailed", "WebhookRequest", "connection_problems"]
