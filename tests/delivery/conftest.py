"""Fixtures of the push-delivery tests: the loopback receiver, a resolver the tests can change, and
delivery settings for loopback (http and 127.0.0.0/8 exempted explicitly, as the media tests exempt
their server) with short timeouts and a retry schedule of fractions of a second."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import pytest

from tests.delivery.receiver import HOOKS_HOST, Receiver
from tests.fixtures.app import USER_A, USER_B
from tests.fixtures.media_server import MEDIA_HOST, StaticResolver

A = {"Authorization": "Basic " + base64.b64encode(":".join(USER_A).encode()).decode()}
B = {"Authorization": "Basic " + base64.b64encode(":".join(USER_B).encode()).decode()}
RETRY_SCHEDULE = [0.2, 0.2, 0.2]
LOOPBACK_DELIVERY = {
    "allow_http": True,
    "allow_private_networks": ["127.0.0.0/8"],
    "retry_schedule_seconds": RETRY_SCHEDULE,
    "timeout_seconds": 1.0,
    "turn_seconds": 5.0,
}


class ChangingResolver(StaticResolver):
    """A StaticResolver whose answers a test may change (DNS that changes after registration)."""

    def set(self, host: str, addresses: list[str]) -> None:
        self._answers[host.lower()] = list(addresses)


@pytest.fixture(scope="session")
def receiver_session() -> Iterator[Receiver]:
    receiver = Receiver()
    yield receiver
    receiver.close()


@pytest.fixture
def receiver(receiver_session: Receiver) -> Iterator[Receiver]:
    yield receiver_session
    receiver_session.reset()


@pytest.fixture
def resolver() -> ChangingResolver:
    return ChangingResolver({HOOKS_HOST: ["127.0.0.1"], MEDIA_HOST: ["127.0.0.1"], "public.test": ["93.184.216.34"]})


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    # Media from the loopback media server, for the attachment events; the local store's URLs made by the
    # worker (no request to take the host from) are absolute only with public_base_url.
    return {
        "public_base_url": "http://localhost",
        "delivery": dict(LOOPBACK_DELIVERY),
        "media": {"fetch": {"allow_http": True, "allow_private_hosts": [MEDIA_HOST]}},
    }


def register(client, url: str, headers: dict[str, str] = A, **fields: Any) -> dict[str, Any]:
    response = client.post("/api/v1/endpoints", json={"url": url, **fields}, headers=headers)
    assert response.status_code == 201, response.get_data(as_text=True)
    return response.get_json()


def listen(client, receiver: Receiver, path: str = "/hook", headers: dict[str, str] = A, **fields: Any) -> dict:
    """Register the receiver's `path` as an endpoint and have the receiver verify with its secret."""
    endpoint = register(client, receiver.url(path), headers, **fields)
    receiver.expect(path, endpoint["secret"])
    return endpoint
