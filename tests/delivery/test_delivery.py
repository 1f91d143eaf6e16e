"""Push delivery end to end, on SQLite and PostgreSQL: signed webhooks go in through the intake, the
worker's turn (called here as the queue would call it) POSTs each event to a loopback receiver that
verifies it with the official standardwebhooks library, and the API shows how each attempt went."""

from __future__ import annotations

from tests.delivery.conftest import A, listen
from tests.delivery.receiver import payload_of
from tests.support.standard import inbound_body, post_standard


def deliver(runtime, endpoint: dict) -> dict | None:
    return runtime.deliveries.drain(endpoint["id"])


def test_a_message_reaches_the_endpoint_signed_as_the_read_api_shows_it(client, runtime, receiver):
    endpoint = listen(client, receiver)
    assert endpoint["secret"].startswith("whsec_") and endpoint["eventTypes"] == []
    assert post_standard(client, inbound_body("m-1", text="hi")).status_code == 200
    assert deliver(runtime, endpoint) == {"delivered": 1}
    [received] = receiver.wait_for(1)
    payload = payload_of(received)
    message = client.get("/api/v1/providers/standard/messages/m-1", headers=A).get_json()
    assert payload["type"] == "message.received"
    assert payload["data"] == message
    assert payload["timestamp"].endswith("Z")
    assert received.headers["webhook-id"].startswith("evt_")
    assert received.headers["content-type"] == "application/json"
