"""Provider adapters, one module each, registered by name (the <provider> part of the webhook URL)."""
from __future__ import annotations

from .base import ParseFailed, ProviderAdapter, VerificationFailed, WebhookRequest
from .standard import StandardAdapter

ADAPTERS: dict[str, ProviderAdapter] = {
    adapter.name: adapter
    for adapter in (
        StandardAdapter(),
    )
}

__all__ = ["ADAPTERS", "ParseFailed", "ProviderAdapter", "VerificationFailed", "WebhookRequest"]
