"""The console's operators and a signed-in test client, and the loopback webhook receiver of the delivery
tests (`receiver`). Every console test runs on SQLite and PostgreSQL (the `app` fixture)."""

from __future__ import annotations

import re

import pytest
from werkzeug.security import generate_password_hash

from tests.delivery.conftest import LOOPBACK_DELIVERY, receiver, receiver_session
from tests.delivery.receiver import HOOKS_HOST
from tests.fixtures.app import TENANT_A, TENANT_B
from tests.fixtures.media_server import StaticResolver, loopback_resolver

__all__ = ["receiver", "receiver_session"]

ADMIN = ("ada", "ada-password-1")  # every tenant
VIEWER = ("vic", "vic-password-1")  # every tenant, reads only
ADMIN_A = ("alice", "alice-password-1")  # tenant A only
ADMIN_B = ("bob", "bob-password-1")  # tenant B only


def _hash(password: str) -> str:
    return generate_password_hash(password, method="pbkdf2:sha256:1000")


OPERATORS = [
    {"username": ADMIN[0], "password_hash": _hash(ADMIN[1]), "role": "admin", "tenants": ["*"]},
    {"username": VIEWER[0], "password_hash": _hash(VIEWER[1]), "role": "viewer", "tenants": ["*"]},
    {"username": ADMIN_A[0], "password_hash": _hash(ADMIN_A[1]), "role": "admin", "tenants": [TENANT_A]},
    {"username": ADMIN_B[0], "password_hash": _hash(ADMIN_B[1]), "role": "admin", "tenants": [TENANT_B]},
]


# For tests whose actions run downloads to the end: the queue runs them at once, media come from the
# loopback media server (named media.test), and a failed download ends `failed` at once.
ACTION_SETTINGS = {
    "operators": OPERATORS,
    "queue": {"immediate": True},
    "media": {
        "fetch": {"allow_http": True, "allow_private_hosts": ["media.test"], "total_timeout": 2},
        "retry_max_attempts": 1,
    },
}

# For tests whose actions send push deliveries as well: to the loopback receiver (named hooks.test), with
# the delivery tests' exemptions and short timeouts; the queue runs a woken endpoint's turn at once. A
# failed attempt's retry never falls due during a test (the queue would run it at once too).
DELIVERY_SETTINGS = {**ACTION_SETTINGS, "delivery": {**LOOPBACK_DELIVERY, "retry_schedule_seconds": [600]}}


def delivery_resolver() -> StaticResolver:
    """The media server's and the receiver's names, both on loopback."""
    return loopback_resolver({HOOKS_HOST: ["127.0.0.1"]})


@pytest.fixture
def settings_overrides() -> dict:
    return {"operators": OPERATORS}


def csrf_token(page_html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', page_html)
    assert found, "the page has no CSRF token"
    return found.group(1)


def sign_in(client, operator: tuple[str, str]):
    token = csrf_token(client.get("/console/login").get_data(as_text=True))
    return client.post("/console/login", data={"username": operator[0], "password": operator[1], "csrf_token": token})


def post_form(client, url: str, data: dict | None = None, *, page: str = "/console/"):
    """A POST as the console's own form sends it: with the CSRF token of a page it shows."""
    token = csrf_token(client.get(page).get_data(as_text=True))
    return client.post(url, data={**(data or {}), "csrf_token": token})


@pytest.fixture
def admin(client):
    assert sign_in(client, ADMIN).status_code == 303
    return client
