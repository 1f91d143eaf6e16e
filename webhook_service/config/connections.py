"""Finding the connection (one provider account) a webhook URL names."""

from __future__ import annotations

from collections import defaultdict

from webhook_service.config.model import Connection


class ConnectionDirectory:
    def __init__(self, connections: list[Connection]):
        self._by_key = {(c.provider, c.name): c for c in connections}
        self._by_provider: dict[str, list[Connection]] = defaultdict(list)
        for connection in connections:
            self._by_provider[connection.provider].append(connection)

    def find(self, provider: str, name: str | None = None) -> Connection | None:
        """`/webhooks/<provider>/<name>` names one; `/webhooks/<provider>` means the connection called
        "default", or the provider's only connection. Anything else is not found (never a guess)."""
        if name is not None:
            return self._by_key.get((provider, name))
        if (provider, "default") in self._by_key:
            return self._by_key[(provider, "default")]
        candidates = self._by_provider.get(provider, [])
        return candidates[0] if len(candidates) == 1 else None

    def all(self) -> list[Connection]:
        return [c for group in self._by_provider.values() for c in group]
