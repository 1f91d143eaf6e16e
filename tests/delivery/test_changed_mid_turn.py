"""An endpoint its owner disables, deletes or points at a new URL while a turn delivers to it: the turn
sends nothing more to the URL it claimed, what it sent before is recorded, what is left waits for the
endpoint as it is now, and the old URL's failures do not become the new one's health."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from tests.delivery.conftest import A, listen
from tests.support.standard import inbound_body, post_standard
from webhook_service.database.tables import DELIVERIES, ENDPOINTS

EVENTS = 5


def change_on_first_request(client, receiver, endpoint, change: str) -> list[int]:
    """Make `change` through the API while the turn's first POST to /old is being answered; the API's
    answers (one)."""
    answered: list[int] = []
    path = f"/api/v1/endpoints/{endpoint['id']}"

    def hook(payload):
        if answered:
            return
        if change == "disable":
            response = client.patch(path, json={"enabled": False}, headers=A)
        elif change == "delete":
            response = client.delete(path, headers=A)
        else:
            response = client.patch(path, json={"url": receiver.url("/new")}, headers=A)
        answered.append(response.status_code)

    receiver.on_request("/old", hook)
    return answered


def statuses(runtime, endpoint) -> list[str]:
    with runtime.db.reading() as session:
        query = sa.select(DELIVERIES.c.status).where(DELIVERIES.c.endpoint_id == endpoint["id"])
        return sorted(session.scalars(query.order_by(DELIVERIES.c.event_id)))


@pytest.mark.parametrize("change", ["disable", "delete", "new_url"])
def test_a_turn_sends_nothing_more_to_the_url_it_claimed_once_the_endpoint_changes(client, runtime, receiver, change):
    endpoint = listen(client, receiver, "/old")
    receiver.expect("/new", endpoint["secret"])
    for number in range(EVENTS):
        assert post_standard(client, inbound_body(f"m-{number}")).status_code == 200
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


@pytest.mark.parametrize("status", [500, 410])
def test_the_old_urls_failures_are_not_written_over_a_new_urls_fresh_start(client, runtime, receiver, status):
    endpoint = listen(client, receiver, "/old")
    receiver.expect("/new", endpoint["secret"])
    receiver.answer("/old", status)
    for number in range(EVENTS):
        post_standard(client, inbound_body(f"m-{number}"))
    answered = change_on_first_request(client, receiver, endpoint, "new_url")
    runtime.deliveries.drain(endpoint["id"])
    assert answered == [200]
    with runtime.db.reading() as session:
        row = session.execute(sa.select(ENDPOINTS).where(ENDPOINTS.c.id == endpoint["id"])).one()
    # Neither paused, counted as failing nor disabled (410) for what the old URL answered.
    assert (row.enabled, row.failing_since, row.consecutive_failures, row.paused_until) == (True, None, 0, None)
    assert runtime.deliveries.drain(endpoint["id"]) == {"delivered": EVENTS - 1}  # the failed one waits its retry
