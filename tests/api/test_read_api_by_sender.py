"""A sender's messages are found by index (migration 0014), not by reading every newer message.

The read API's `from` filter (and the console's) read the tenant's messages from the newest back until
the page was full: every one of them for a customer's number seen a few times, past the statement timeout
on a busy service. Here the customer's message is older than 20,000 others; the plan of the statement
must find it by `ix_messages_from_number_seq` (SQLite: the index it searches; PostgreSQL: no row read and
thrown away by a filter)."""

from __future__ import annotations

import base64

import sqlalchemy as sa

from tests.fixtures.app import TENANT_A, USER_A
from tests.support.plans import numbers, plan, rows_thrown_away, statements_sent, without_statement_timeout
from tests.support.standard import inbound_body, post_standard

A = {"Authorization": "Basic " + base64.b64encode(":".join(USER_A).encode()).decode()}
CUSTOMER = "+15550009999"
OTHER_MESSAGES = 20_000


def _messages_of_other_senders(runtime, count: int) -> None:
    with runtime.db.engine.begin() as connection:
        if runtime.db.dialect == "postgresql":
            without_statement_timeout(connection)
        connection.execute(
            sa.text(
                "INSERT INTO messages (id, tenant_id, provider, connection, provider_message_id, direction,"
                " from_number, to_numbers, has_content, received_at, updated_at, extra)"
                " SELECT 'other-' || n, :tenant, 'standard', 'main', 'other-' || n, 'inbound',"
                " '+1555' || (1000000 + n), '[\"+15551234567\"]', true, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, '{}'"
                f" FROM ({numbers(runtime.db.dialect)}) AS s"
            ),
            {"tenant": TENANT_A, "count": count},
        )
        if runtime.db.dialect == "postgresql":
            connection.exec_driver_sql("ANALYZE messages")


def test_a_senders_messages_are_found_by_their_index(client, runtime):
    post_standard(client, inbound_body("customer-1", sender=CUSTOMER))
    _messages_of_other_senders(runtime, OTHER_MESSAGES)

    with statements_sent(runtime.db.engine, lambda statement: "messages.from_number =" in statement) as sent:
        found = client.get("/api/v1/messages", headers=A, query_string={"from": CUSTOMER}).get_json()["messages"]

    assert [message["providerMessageId"] for message in found] == ["customer-1"]
    [(statement, parameters)] = sent
    with runtime.db.engine.connect() as connection:
        lines = plan(connection, statement, parameters, analyze=True)
        connection.rollback()
    if runtime.db.dialect == "postgresql":
        assert rows_thrown_away(lines) < 100, lines
    else:
        assert any("ix_messages_from_number_seq" in line for line in lines), lines
