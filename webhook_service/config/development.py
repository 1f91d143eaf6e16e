"""The development defaults: a first run with no configuration gets one tenant, one API user and an
unsigned connection per provider, so every README example works at once. Never applied in production."""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterable
from typing import Any

from werkzeug.security import generate_password_hash

from webhook_service.config.model import DEFAULT_PHONE_NUMBER, DEFAULT_PHONE_NUMBER_ID, DEFAULT_TENANT_ID

# The seeds' own example credentials, so their client code runs unchanged against a development server.
DEVELOPMENT_USERNAME = "your-email@example.com"
DEVELOPMENT_PASSWORD = "your-password"
DEVELOPMENT_API_KEY = "dev-api-key"


def is_development(data: dict[str, Any]) -> bool:
    return data.get("environment", "development") == "development"


def add_development_defaults(data: dict[str, Any], provider_names: Iterable[str]) -> None:
    """Fill in what a development configuration leaves out (in place, before validation)."""
    if not data.get("tenants"):
        data["tenants"] = [
            {
                "id": DEFAULT_TENANT_ID,
                "name": "development",
                "phone_numbers": [{"id": DEFAULT_PHONE_NUMBER_ID, "number": DEFAULT_PHONE_NUMBER}],
            }
        ]
    tenant_id = data["tenants"][0].get("id", DEFAULT_TENANT_ID)
    if not data.get("api_users") and not data.get("api_keys"):
        data["api_users"] = [
            {"username": DEVELOPMENT_USERNAME, "password_hash": _development_password_hash(), "tenant": tenant_id}
        ]
        data["api_keys"] = [
            {
                "name": "development",
                "key_sha256": hashlib.sha256(DEVELOPMENT_API_KEY.encode()).hexdigest(),
                "tenant": tenant_id,
            }
        ]
    if not data.get("connections"):
        data["connections"] = [
            {"provider": provider, "name": "dev", "tenant": tenant_id, "verify": False}
            for provider in sorted(provider_names)
        ]


@functools.cache
def _development_password_hash() -> str:
    # Hashing is deliberately slow; do it once per process however often settings are loaded.
    return generate_password_hash(DEVELOPMENT_PASSWORD)
