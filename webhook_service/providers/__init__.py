"""Provider adapters, one module each, registered by name (the <provider> part of the webhook URL)."""
from __future__ import annotations

from .approvedcontact import ApprovedContactAdapter
from .base import ParseFailed, ProviderAdapter, VerificationFailed, WebhookRequest
from .bird import BirdAdapter
from .mapping import MappingAdapter
from .plivo import PlivoAdapter
from .protexting import ProTextingAdapter
from .standard import StandardAdapter
from .telnyx import TelnyxAdapter
from .twilio import TwilioAdapter
from .vonage import VonageAdapter

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

__all__ = ["ADAPTERS", "ParseFailed", "ProviderAdapter", "VerificationFailed", "WebhookRequest"]
