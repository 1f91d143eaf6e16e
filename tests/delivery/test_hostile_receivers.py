"""Receivers that misbehave, one test each: every attempt is recorded with what happened, retried (or,
for 410, ends the endpoint), and never holds the worker longer than the attempt's timeout (1 s here)."""

from __future__ import annotations

import logging
import time

import pytest
import sqlalchemy as sa

from tests.delivery.conftest import A, listen, register
from tests.delivery.receiver import HUGE_BYTES
from tests.support.refusing import refusing_inserts
from tests.support.standard import inbound_body, post_standard
from webhook_service.database.tables import DELIVERIES, ENDPOINTS

# The attempt's timeout (LOOPBACK_DELIVERY, 1 s) plus room: how long the attempt itself may take, as
# recorded (send to cut-off). The whole turn adds its database work, which a machine busy with other
# work can stretch by seconds (seen: 3.2 s once under a load of 7): it only gets a sanity bound.
WORKER_FREE_WITHIN = 2.5
TURN_SANITY_SECONDS = 15


def one_turn(client, runtime, endpoint: dict) -> tuple[dict, dict, float]:
    """A webhook, then one turn: (its outcomes, the attempt as the API shows it, the turn's duration)."""
    assert post_standard(client, inbound_body("m-1")).status_code == 200
    started = time.monotonic()
    outcomes = runtime.deliveries.drain(endpoint["id"])
    duration = time.monotonic() - started
    found = client.get(f"/api/v1/endpoints/{endpoint['id']}/attempts", headers=A).get_json()["attempts"]
    assert len(found) == 1, (outcomes, duration, found)
    return outcomes, found[0], duration


def delivery_row(runtime):
    with runtime.db.reading() as session:
        return session.execute(sa.select(DELIVERIES)).one()


def assert_retried(runtime) -> None:
    row = delivery_row(runtime)
    assert row.status == "pending" and row.attempts == 1 and row.next_attempt_at is not None


@pytest.mark.parametrize("behaviour", ["hang", "drip"])
def test_a_receiver_that_hangs_or_drips_is_cut_off_at_the_timeout(client, runtime, receiver, behaviour):
    endpoint = listen(client, receiver)
    receiver.behave("/hook", behaviour)
    outcomes, attempt, duration = one_turn(client, runtime, endpoint)
    assert outcomes == {"retry": 1}
    assert (attempt["errorCode"], attempt["httpStatus"]) == ("timeout", None)
    assert "1 s" in attempt["error"]
    assert attempt["latencyMs"] < WORKER_FREE_WITHIN * 1000 and duration < TURN_SANITY_SECONDS
    assert_retried(runtime)


def test_a_redirect_is_not_followed(client, runtime, receiver):
    endpoint = listen(client, receiver)
    receiver.behave("/hook", "redirect")
    outcomes, attempt, _ = one_turn(client, runtime, endpoint)
    assert outcomes == {"retry": 1}
    assert (attempt["httpStatus"], attempt["outcome"]) == (307, "retry")
    assert receiver.requests("/elsewhere") == []
    assert_retried(runtime)


def test_an_answer_of_10_mb_is_not_read_beyond_its_first_kib(client, runtime, receiver):
    endpoint = listen(client, receiver)
    receiver.behave("/hook", "huge")
    outcomes, attempt, duration = one_turn(client, runtime, endpoint)
    assert outcomes == {"delivered": 1}  # the status is the answer; the body is only kept for the record
    assert attempt["responseBody"] == "x" * 1024
    assert attempt["latencyMs"] < WORKER_FREE_WITHIN * 1000 and duration < TURN_SANITY_SECONDS
    assert HUGE_BYTES == 10 * 1024 * 1024


def test_a_receiver_answering_500_forever_ends_failed(client, runtime, receiver):
    endpoint = listen(client, receiver)
    receiver.answer("/hook", 500, b"broken")
    outcomes, attempt, _ = one_turn(client, runtime, endpoint)
    assert outcomes == {"retry": 1} and attempt["httpStatus"] == 500 and attempt["responseBody"] == "broken"
    for _ in range(3):
        time.sleep(0.25)
        runtime.deliveries.drain(endpoint["id"])
    row = delivery_row(runtime)
    assert (row.status, row.attempts) == ("failed", 4)


def test_a_receiver_that_closes_mid_answer_is_retried(client, runtime, receiver):
    endpoint = listen(client, receiver)
    receiver.behave("/hook", "close")
    outcomes, attempt, duration = one_turn(client, runtime, endpoint)
    assert outcomes == {"retry": 1}
    assert attempt["httpStatus"] is None and attempt["errorCode"] in ("connection_failed", "bad_response")
    assert attempt["latencyMs"] < WORKER_FREE_WITHIN * 1000 and duration < TURN_SANITY_SECONDS
    assert_retried(runtime)


def test_a_receiver_answering_410_disables_the_endpoint(client, runtime, receiver):
    endpoint = listen(client, receiver)
    receiver.answer("/hook", 410)
    outcomes, attempt, _ = one_turn(client, runtime, endpoint)
    assert outcomes == {"disabled": 1} and attempt["outcome"] == "disabled"
    assert client.get(f"/api/v1/endpoints/{endpoint['id']}", headers=A).get_json()["enabled"] is False


def test_a_name_resolving_to_a_private_address_at_delivery_time_is_refused_without_connecting(
    client, runtime, receiver, resolver
):
    resolver.set("rebind.test", ["93.184.216.34"])  # public when registered
    endpoint = register(client, receiver.url("/hook", host="rebind.test"))
    resolver.set("rebind.test", ["10.0.0.7"])  # private when delivered
    calls = len(resolver.calls)
    outcomes, attempt, _ = one_turn(client, runtime, endpoint)
    assert outcomes == {"retry": 1}
    assert attempt["errorCode"] == "ssrf_refused" and "10.0.0.7" in attempt["error"]
    assert resolver.calls[calls:] == ["rebind.test"]
    assert receiver.requests() == []
    assert_retried(runtime)


def test_an_answer_with_a_nul_byte_is_recorded_with_the_nul_replaced(client, runtime, receiver):
    # PostgreSQL's text columns refuse a NUL: the record of the batch failed, and the batch went again.
    endpoint = listen(client, receiver)
    receiver.answer("/hook", 200, b"ok\x00binary\xff")
    outcomes, attempt, _ = one_turn(client, runtime, endpoint)
    assert outcomes == {"delivered": 1} and attempt["responseBody"] == "ok\ufffdbinary\ufffd"
    assert delivery_row(runtime).status == "delivered"
    assert runtime.deliveries.drain(endpoint["id"]) == {}
    assert len(receiver.requests("/hook")) == 1


def test_a_turn_whose_record_fails_releases_the_endpoint_at_once(client, runtime, receiver, caplog):
    endpoint = listen(client, receiver)
    assert post_standard(client, inbound_body("m-1")).status_code == 200
    caplog.set_level(logging.ERROR, logger="webhook_service.delivery")
    with refusing_inserts(runtime.db, "delivery_attempts"):  # a database that refuses the attempt's row
        runtime.deliveries.drain(endpoint["id"])
    [failed] = [r for r in caplog.records if r.getMessage() == "delivery_turn_failed"]
    assert failed.levelno == logging.ERROR and failed.fields == {"endpoint_id": endpoint["id"]}
    with runtime.db.reading() as session:
        claimed = session.execute(sa.select(ENDPOINTS.c.claimed_until, ENDPOINTS.c.claim_token)).one()
    assert tuple(claimed) == (None, None)  # not held for the rest of the lease
    row = delivery_row(runtime)
    assert (row.status, row.attempts) == ("pending", 0)  # sent again, by a later turn
    assert runtime.deliveries.drain(endpoint["id"]) == {"delivered": 1}
