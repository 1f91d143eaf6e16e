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
    """Fill in what a development configuration leaves out (in place, before validation). A section is
    left out when it is absent or an empty list; one given in any other shape (a table where a list of
    tables belongs, a string, a list of numbers) is left as it is, for validation to refuse it exactly as
    in production. Each section is filled on its own: a configuration with connections of its own gets
    none of the development ones."""
    if _left_out(data, "tenants"):
        data["tenants"] = [
            {
                "id": DEFAULT_TENANT_ID,
                "name": "development",
                "phone_numbers": [{"id": DEFAULT_PHONE_NUMBER_ID, "number": DEFAULT_PHONE_NUMBER}],
            }
        ]
    tenant_id = _first_tenant_id(data["tenants"])
    if _left_out(data, "api_users") and _left_out(data, "api_keys"):
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
    if _left_out(data, "connections"):
        data["connections"] = [
            {"provider": provider, "name": "dev", "tenant": tenant_id, "verify": False}
            for provider in sorted(provider_names)
        ]


def _left_out(data: dict[str, Any], section: str) -> bool:
    return data.get(section, []) == []


def _first_tenant_id(tenants: Any) -> str:
    """The first tenant's id, which the development users and connections belong to; the default tenant's
    when the first tenant has no id that could be one (validation then says what is wrong with it)."""
    first = tenants[0] if isinstance(tenants, list) and tenants else None
    tenant_id = first.get("id") if isinstance(first, dict) else None
    return tenant_id if isinstance(tenant_id, str) else DEFAULT_TENANT_ID


@functools.cache
def _development_password_hash() -> str:
    # Hashing is deliberately slow; do it once per process however often settings are loaded.
    return generate_password_hash(DEVELOPMENT_PASSWORD)
