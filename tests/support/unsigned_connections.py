"""One development connection (verify = false) per adapter and per kind of options the provider tests
configure (options that only change how a signature is checked do not count), so that whatever a test
sends reaches the adapter's parse: nothing is refused for want of a signature. Used by the tests of
hostile webhook bodies."""

from __future__ import annotations

from tests.fixtures.app import TENANT_A
from tests.support.mapping import ACME_OPTIONS, FLAT_OPTIONS

# The protexting tests' connection that overrides part of the preset.
PROTEXTING_CUSTOM_OPTIONS = {"fields": {"text": ["Body", "Message"]}, "status_map": {"dlvrd_ok": "delivered"}}

# (provider, connection name, options): the webhook URL of each is /webhooks/<provider>/<name>.
UNSIGNED = (
    ("standard", "open", {}),
    ("twilio", "open", {}),
    ("plivo", "open", {}),
    ("telnyx", "open", {}),
    ("bird", "open", {}),
    ("vonage", "open", {}),
    ("approvedcontact", "open", {}),
    ("mapping", "acme", ACME_OPTIONS),
    ("mapping", "flat", FLAT_OPTIONS),
    ("protexting", "open", {}),
    ("protexting", "custom", PROTEXTING_CUSTOM_OPTIONS),
)


def unsigned_connections() -> list[dict]:
    return [
        {"provider": provider, "name": name, "tenant": TENANT_A, "verify": False, "options": options}
        for provider, name, options in UNSIGNED
    ]


def webhook_url(provider: str, name: str) -> str:
    return f"/webhooks/{provider}/{name}"
