"""Deliveries in the worker processes' consumers, as `webhook-service worker` runs them (huey's thread
workers and the feed watch), on both queue backends (the embedded SQLite queue, Redis) and both
databases: events reach endpoints without anyone calling a turn by hand, one endpoint never has two
deliveries in flight at once however many workers there are, a dead endpoint does not hold up a healthy
one, and lost wake-ups (a killed worker, a queue that is down) only delay deliveries until the sweep."""

from __future__ import annotations

import signal
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from tests.delivery.conftest import LOOPBACK_DELIVERY, listen
from tests.delivery.receiver import payload_of
from tests.fixtures.app import TENANT_A
from tests.support.standard import inbound_body, post_standard, status_body
from webhook_service.database import feed
from webhook_service.database.tables import DELIVERIES, ENDPOINTS, EVENTS
from webhook_service.runtime import Runtime
from webhook_service.worker.feed_watch import FeedWatcher

THREADS = 3
# From a webhook's 2xx to the receiver, with the feed watched every 50 ms: generous for a busy machine.
ON_TIME_SECONDS = 2.5


@pytest.fixture(params=["embedded", "redis"])
def queue_backend(request) -> dict[str, Any]:
    if request.param == "embedded":
        return {}
    # The shared Redis: a queue name of this test's own, so no other test or helper shares its tasks.
    return {"redis_url": request.getfixturevalue("redis_url"), "queue": {"name": f"delivery_{uuid.uuid4().hex[:12]}"}}


@pytest.fixture
def settings_overrides(queue_backend) -> dict[str, Any]:
    return {
        "public_base_url": "http://localhost",
        "delivery": {**LOOPBACK_DELIVERY, "poll_interval_seconds": 0.05},
        **queue_backend,
    }


@contextmanager
def running_worker(runtime: Runtime, threads: int = THREADS, *, watch: bool = True) -> Iterator[None]:
    """One consumer process's worth: huey's thread workers (minus the signal handlers it installs) and,
    as in the process that runs the periodic tasks, the feed watch."""
    handlers = {number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    consumer = runtime.queue.consumer(threads, periodic=False)
    watcher = FeedWatcher(
        runtime.deliveries.wake_for_new_events,
        runtime.catch_up_deliveries,
        runtime.settings.delivery.poll_interval_seconds,
    )
    consumer.start()
    if watch:
        watcher.start()
    try:
        yield
    finally:
        if watch:
            watcher.stop()
        consumer.stop(graceful=True)
        for number, handler in handlers.items():
            signal.signal(number, handler)


def test_webhooks_reach_the_endpoint_through_the_workers(client, runtime, receiver):
    endpoint = listen(client, receiver)
    with running_worker(runtime):
        sent = {}
        for number in range(5):
            assert post_standard(client, inbound_body(f"m-{number}")).status_code == 200
            sent[f"m-{number}"] = time.monotonic()
        post_standard(client, status_body("m-4", "delivered"))
        received = receiver.wait_for(6, timeout=10)
    payloads = [payload_of(r) for r in received]
    assert [p["data"]["providerMessageId"] for p in payloads] == ["m-0", "m-1", "m-2", "m-3", "m-4", "m-4"]
    assert [p["type"] for p in payloads][-2:] == ["message.received", "message.status"]
    for r, p in zip(received[:5], payloads[:5], strict=True):
        assert r.at - sent[p["data"]["providerMessageId"]] < ON_TIME_SECONDS
    with runtime.db.reading() as session:
        assert session.scalar(sa.select(sa.func.count()).where(DELIVERIES.c.status == "delivered")) == 6
    assert endpoint["id"]


def test_two_workers_never_deliver_to_one_endpoint_at_once(client, runtime, receiver, settings):
    listen(client, receiver)
    receiver.answer("/hook", 200, delay=0.03)
    for number in range(30):
        post_standard(client, inbound_body(f"m-{number}"))
    other = Runtime(settings, resolver=runtime.resolver)
    try:
        with running_worker(runtime), running_worker(other):
            received = receiver.wait_for(30, timeout=20)
            time.sleep(0.3)  # anything delivered twice would arrive meanwhile
    finally:
        other.close()
    assert receiver.most_at_once("/hook") == 1
    ids = [r.headers["webhook-id"] for r in receiver.requests()]
    assert len(ids) == len(set(ids)) == 30
    assert ids == sorted(ids, key=lambda i: int(i.split("_")[1]))  # feed order
    assert all(r.verified for r in received)


EMBEDDED_ONLY = pytest.mark.parametrize("queue_backend", ["embedded"], indirect=True)
# Behind the dead endpoint, the healthy one would wait for its turn to end (delivery.turn_seconds, 5 s);
# beside it, it takes some 50 ms, and a CI machine stalled on its disk has taken more than 2.5 s.
HEALTHY_WITHIN = 4.5


@pytest.mark.slow
@EMBEDDED_ONLY
def test_a_dead_endpoint_with_10000_events_waiting_does_not_hold_up_a_healthy_one(client, runtime, receiver):
    dead = listen(client, receiver, "/dead")
    receiver.behave("/dead", "hang")
    healthy = listen(client, receiver, "/live", eventTypes=["message.status"])
    post_standard(client, inbound_body("m-1"))
    with runtime.db.reading() as session:
        message = session.execute(sa.select(EVENTS.c.message_id, EVENTS.c.data)).first()
    now = datetime.now(UTC)
    backlog = [
        {
            "tenant_id": TENANT_A,
            "type": feed.MESSAGE_RECEIVED,
            "message_id": message.message_id,
            "attachment_id": None,
            "created_at": now,
            "data": message.data,
        }
        for _ in range(10_000)
    ]
    with runtime.db.writing() as conn:
        feed.append(conn, backlog)
    with running_worker(runtime, threads=2):
        receiver.wait_for(1, "/dead", timeout=10)
        for number in range(5):
            time.sleep(0.3)
            report = status_body("m-1", "delivered", occurred_at=f"2026-01-01T00:00:0{number}Z")
            assert post_standard(client, report).status_code == 200
            sent = time.monotonic()
            arrived = receiver.wait_for(number + 1, "/live", timeout=HEALTHY_WITHIN)[number]
            assert arrived.at - sent < HEALTHY_WITHIN
    with runtime.db.reading() as session:
        attempted = session.scalar(
            sa.select(sa.func.count()).where(DELIVERIES.c.endpoint_id == dead["id"], DELIVERIES.c.attempts > 0)
        )
        waiting = session.scalar(
            sa.select(sa.func.count()).where(DELIVERIES.c.endpoint_id == dead["id"], DELIVERIES.c.status == "pending")
        )
    # The dead endpoint cost one attempt per pause, not one per event.
    assert 1 <= attempted <= 10 and waiting >= 100
    assert len(receiver.requests("/live")) == 5 and healthy["id"]


@EMBEDDED_ONLY
def test_a_worker_killed_mid_turn_only_delays_the_endpoint_until_its_lease_ends(client, runtime, receiver):
    endpoint = listen(client, receiver)
    post_standard(client, inbound_body("m-1"))
    # A worker took the endpoint and died: its lease holds for a while, then the sweep hands it on.
    # Judged by when the receiver got the event, not by how long the test slept: a loaded machine can
    # stall the test past the lease's end.
    lease_ends = datetime.now(UTC) + timedelta(seconds=2)
    with runtime.db.writing() as conn:
        conn.execute(sa.update(ENDPOINTS).values(claimed_until=lease_ends, claim_token="dead"))
    with running_worker(runtime):
        time.sleep(max(0.0, lease_ends.timestamp() - time.time()) + 0.2)
        _backdate_events(runtime)
        runtime.sweep_deliveries()  # the minute's sweep, run now
        receiver.wait_for(1, timeout=10)
    assert [request.wall_time >= lease_ends.timestamp() for request in receiver.requests()] == [True]
    assert endpoint["id"]


@EMBEDDED_ONLY
def test_a_wake_up_lost_to_a_queue_outage_is_made_good_by_the_sweep(client, runtime, receiver, settings):
    listen(client, receiver)
    down = Runtime(settings.model_copy(update={"redis_url": "redis://127.0.0.1:1/0"}), resolver=runtime.resolver)
    try:
        post_standard(client, inbound_body("m-1"))
        seen = down.deliveries.wake_for_new_events(None)
        post_standard(client, inbound_body("m-2"))
        with pytest.raises(Exception):  # noqa: B017  # whatever the Redis client raises: the watch logs it and goes on
            down.deliveries.wake_for_new_events(seen)
    finally:
        down.close()
    with running_worker(runtime, watch=False):
        time.sleep(0.5)
        assert receiver.requests() == []
        _backdate_events(runtime)
        assert runtime.sweep_deliveries() == 1
        receiver.wait_for(2, timeout=10)


def _backdate_events(runtime: Runtime) -> None:
    """As if the sweep's grace period had passed since the events arrived."""
    with runtime.db.writing() as conn:
        conn.execute(sa.update(EVENTS).values(created_at=datetime.now(UTC) - timedelta(minutes=5)))
        conn.execute(sa.update(DELIVERIES).values(next_attempt_at=datetime.now(UTC) - timedelta(minutes=5)))
