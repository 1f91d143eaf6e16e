"""An endpoint its owner disables, deletes, re-points, re-keys or slows down while a turn delivers to it:
the turn reads the endpoint again at most every delivery.endpoint_check_seconds and stops once it is no
longer as claimed; what it sent before is recorded, what is left waits for the endpoint as it is now, and
the old URL's failures do not become the new one's health."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from tests.delivery.conftest import LOOPBACK_DELIVERY, A, listen
from tests.support.standard import inbound_body, post_standard
from webhook_service.database.tables import DELIVERIES, ENDPOINTS

EVENTS = 5
# Read before every POST: the change is seen by the POST after the one it was made during.
EVERY_POST = [{"delivery": {**LOOPBACK_DELIVERY, "endpoint_check_seconds": 0}}]
PUBLIC_BASE = {"public_base_url": "http://localhost"}


def change_on_first_request(client, receiver, endpoint, change: str) -> list[int]:
    """Make `change` through the API while the turn's first POST to /old is being answered; the API's
    answers (one)."""
    answered: list[int] = []
    path = f"/api/v1/endpoints/{endpoint['id']}"

    def hook(payload: Any) -> None:
        if answered:
            return
        if change == "disable":
            response = client.patch(path, json={"enabled": False}, headers=A)
        elif change == "delete":
            response = client.delete(path, headers=A)
        elif change == "rotate":
            response = client.post(f"{path}/rotate-secret", headers=A)
        elif change == "rate_limit":
            response = client.patch(path, json={"rateLimitPerSecond": 1000}, headers=A)
        elif change == "description":
            response = client.patch(path, json={"description": "read by people only"}, headers=A)
        else:
            response = client.patch(path, json={"url": receiver.url("/new")}, headers=A)
        answered.append(response.status_code)

    receiver.on_request("/old", hook)
    return answered


def statuses(runtime, endpoint) -> list[str]:
    with runtime.db.reading() as session:
        query = sa.select(DELIVERIES.c.status).where(DELIVERIES.c.endpoint_id == endpoint["id"])
        return sorted(session.scalars(query.order_by(DELIVERIES.c.event_id)))


def post_events(client, count: int = EVENTS) -> None:
    for number in range(count):
        assert post_standard(client, inbound_body(f"m-{number}")).status_code == 200


@pytest.mark.parametrize("settings_overrides", [{**PUBLIC_BASE, **EVERY_POST[0]}])
@pytest.mark.parametrize("change", ["disable", "delete", "new_url"])
def test_a_turn_sends_nothing_more_to_the_url_it_claimed_once_the_endpoint_changes(client, runtime, receiver, change):
    endpoint = listen(client, receiver, "/old")
    receiver.expect("/new", endpoint["secret"])
    post_events(client)
    answered = change_on_first_request(client, receiver, endpoint, change)
    # The POST in flight when the change committed is the one left: it is recorded as it went.
    assert runtime.deliveries.drain(endpoint["id"]) == {"delivered": 1}
    assert answered == [204 if change == "delete" else 200]
    assert len(receiver.requests("/old")) == 1
    if change == "disable":
        assert statuses(runtime, endpoint) == ["delivered"] + ["failed"] * (EVENTS - 1)
        assert runtime.deliveries.drain(endpoint["id"]) is None
    elif change == "delete":
        assert statuses(runtime, endpoint) == []
    else:
        # The rest goes to the new URL, signed with the same secret.
        assert runtime.deliveries.drain(endpoint["id"]) == {"delivered": EVENTS - 1}
        assert len(receiver.requests("/old")) == 1
        assert [r.verified for r in receiver.requests("/new")] == [True] * (EVENTS - 1)
        assert statuses(runtime, endpoint) == ["delivered"] * EVENTS


@pytest.mark.parametrize("settings_overrides", [{**PUBLIC_BASE, **EVERY_POST[0]}])
def test_after_a_rotation_the_rest_is_signed_with_the_new_secret_too(client, runtime, receiver):
    endpoint = listen(client, receiver, "/old")
    post_events(client)
    rotated: list[str] = []

    def rotate(payload: Any) -> None:
        if not rotated:
            response = client.post(f"/api/v1/endpoints/{endpoint['id']}/rotate-secret", headers=A)
            rotated.append(response.get_json()["secret"])

    receiver.on_request("/old", rotate)
    assert runtime.deliveries.drain(endpoint["id"]) == {"delivered": 1}
    # A receiver that switched to the new secret at once verifies every delivery after the rotation.
    receiver.expect("/old", rotated[0])
    assert runtime.deliveries.drain(endpoint["id"]) == {"delivered": EVENTS - 1}
    requests = receiver.requests("/old")
    assert [r.verified for r in requests[1:]] == [True] * (EVENTS - 1)
    # Signed with both secrets during the rotation's day (v1,<old> v1,<new>).
    assert [r.headers["webhook-signature"].count("v1,") for r in requests] == [1] + [2] * (EVENTS - 1)


@pytest.mark.parametrize("settings_overrides", [{**PUBLIC_BASE, **EVERY_POST[0]}])
@pytest.mark.parametrize("change", ["rate_limit", "description"])
def test_a_new_rate_limit_ends_the_turn_and_a_description_does_not(client, runtime, receiver, change):
    endpoint = listen(client, receiver, "/old")
    post_events(client)
    change_on_first_request(client, receiver, endpoint, change)
    first = runtime.deliveries.drain(endpoint["id"])
    if change == "rate_limit":
        assert first == {"delivered": 1}
        assert runtime.deliveries.drain(endpoint["id"]) == {"delivered": EVENTS - 1}
    else:
        assert first == {"delivered": EVENTS}
    assert statuses(runtime, endpoint) == ["delivered"] * EVENTS


@pytest.mark.parametrize(
    "settings_overrides", [{**PUBLIC_BASE, "delivery": {**LOOPBACK_DELIVERY, "endpoint_check_seconds": 0.15}}]
)
def test_the_endpoint_is_read_again_once_the_interval_has_passed(client, runtime, receiver):
    endpoint = listen(client, receiver, "/old")
    receiver.expect("/new", endpoint["secret"])
    post_events(client)
    # Each answer takes longer than the interval: the POST after the change reads the endpoint first.
    receiver.answer("/old", 204, delay=0.2)
    change_on_first_request(client, receiver, endpoint, "new_url")
    assert runtime.deliveries.drain(endpoint["id"]) == {"delivered": 1}
    assert len(receiver.requests("/old")) == 1


@pytest.mark.parametrize(
    "settings_overrides", [{**PUBLIC_BASE, "delivery": {**LOOPBACK_DELIVERY, "endpoint_check_seconds": 5}}]
)
def test_within_the_interval_the_turn_goes_on_as_the_readme_says(client, runtime, receiver):
    """The window the interval leaves (README): a change made less than endpoint_check_seconds after the
    last read lets the turn's quick POSTs go on to the old URL."""
    endpoint = listen(client, receiver, "/old")
    receiver.expect("/new", endpoint["secret"])
    post_events(client)
    change_on_first_request(client, receiver, endpoint, "new_url")
    assert runtime.deliveries.drain(endpoint["id"]) == {"delivered": EVENTS}
    assert len(receiver.requests("/old")) == EVENTS


@pytest.mark.parametrize("settings_overrides", [{**PUBLIC_BASE, **EVERY_POST[0]}])
@pytest.mark.parametrize("status", [500, 410])
def test_the_old_urls_failures_are_not_written_over_a_new_urls_fresh_start(client, runtime, receiver, status):
    endpoint = listen(client, receiver, "/old")
    receiver.expect("/new", endpoint["secret"])
    receiver.answer("/old", status)
    post_events(client)
    answered = change_on_first_request(client, receiver, endpoint, "new_url")
    runtime.deliveries.drain(endpoint["id"])
    assert answered == [200]
    with runtime.db.reading() as session:
        row = session.execute(sa.select(ENDPOINTS).where(ENDPOINTS.c.id == endpoint["id"])).one()
    # Neither paused, counted as failing nor disabled (410) for what the old URL answered.
    assert (row.enabled, row.failing_since, row.consecutive_failures, row.paused_until) == (True, None, 0, None)
    assert runtime.deliveries.drain(endpoint["id"]) == {"delivered": EVENTS - 1}  # the failed one waits its retry
