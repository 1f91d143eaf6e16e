"""What an endpoint has left to deliver (`history.work_left`), read after every delivery turn, by the sweep
for every endpoint and on the console's endpoint pages: when its next work is due and the time of its
oldest undelivered event. Its query reads the endpoint's pending deliveries by their index and the first
one's event by its id; a join to the event feed, which is never pruned, was planned as a scan of the
whole feed. Also the console's overview of endpoints, which reads each one's last attempt."""

from __future__ import annotations

import re

import pytest
import sqlalchemy as sa

from tests.delivery.conftest import listen
from tests.fixtures.app import TENANT_A
from tests.support.plans import plan, statements_sent
from tests.support.standard import inbound_body, post_standard
from webhook_service.database.tables import DELIVERIES, EVENTS
from webhook_service.delivery import history
from webhook_service.delivery.overview import endpoint_overviews


def test_the_next_due_and_the_oldest_waiting_event(client, runtime, receiver):
    endpoint = listen(client, receiver)
    receiver.answer("/hook", 503)
    for number in range(3):
        assert post_standard(client, inbound_body(f"m-left-{number}")).status_code == 200
    runtime.deliveries.drain(endpoint["id"])  # the first attempt fails: all three wait

    with runtime.db.reading() as session:
        pending = session.execute(
            sa.select(DELIVERIES.c.next_attempt_at, EVENTS.c.created_at, EVENTS.c.id)
            .join(EVENTS, EVENTS.c.id == DELIVERIES.c.event_id)
            .where(DELIVERIES.c.endpoint_id == endpoint["id"], DELIVERIES.c.status == "pending")
            .order_by(EVENTS.c.id)
        ).all()
        head = session.scalar(sa.select(sa.func.max(EVENTS.c.id)))
        left = history.work_left(session, endpoint["id"], TENANT_A, head)
    assert len(pending) == 3
    assert left.next_due == min(row.next_attempt_at for row in pending)
    assert left.oldest == pending[0].created_at  # the first in feed order
    assert left.new_events is False

    with runtime.db.reading() as session:
        nothing = history.work_left(session, "no-such-endpoint", TENANT_A, head)
    assert (nothing.next_due, nothing.oldest, nothing.new_events) == (None, None, False)


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_the_query_reads_by_index_and_joins_nothing(runtime):
    """With sequential scans priced out, only a query that needs one (or a join over the feed) shows it."""
    statement = history._PENDING.compile(dialect=runtime.db.engine.dialect)
    with runtime.db.engine.connect() as connection:
        found = "\n".join(plan(connection, str(statement), {**statement.params, "endpoint_id": "e"}))
    assert "Seq Scan" not in found, found
    assert "Join" not in found and "Nested Loop" not in found, found
    assert "pk_events" in found, found


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_the_overviews_last_attempt_reads_one_entry_per_endpoint(client, runtime, receiver):
    """The console's endpoint pages show each endpoint's last attempt: found by one backward step of the
    (endpoint_id, id) index apiece, not by reading every attempt (a max(id) grouped by endpoint did)."""
    endpoint = listen(client, receiver)
    with runtime.db.engine.begin() as connection:
        connection.exec_driver_sql(
            "INSERT INTO delivery_attempts (endpoint_id, event_id, attempt, attempted_at, outcome, latency_ms)"
            " SELECT %(endpoint)s, g, 1, now(), 'delivered', 1.0 FROM generate_series(1, 500) g",
            {"endpoint": endpoint["id"]},
        )
    with statements_sent(runtime.db.engine, lambda statement: "FROM delivery_attempts" in statement) as sent:
        (overview,) = endpoint_overviews(runtime.db, tenants={TENANT_A})
    assert overview.last_attempt.event_id == 500
    ((statement, parameters),) = sent
    with runtime.db.engine.connect() as connection:
        # Run, as the planner goes for a large table (for one of 500 rows a scan is cheaper than any index).
        found = plan(connection, statement, parameters, analyze=True)
    read = [
        int(rows) * int(loops)
        for line in found
        for rows, loops in re.findall(r" on delivery_attempts .*actual rows=(\d+) loops=(\d+)", line)
    ]
    assert read and max(read) <= 1, found
