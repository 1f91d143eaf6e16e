"""A sender's messages (migration 0014) and a provider's message id (0016) are found by index, not by
reading every newer message.

The read API's `from` filter (and the console's) read the tenant's messages from the newest back until
the page was full: every one of them for a customer's number seen a few times, past the statement timeout
on a busy service. `providerMessageId` without a provider, which the key's unique index cannot serve,
read the whole table on PostgreSQL (95 ms per million messages); its index is PostgreSQL's only (SQLite's
planner kept the tenant's). Here the customer's message is older than 20,000 others; the plan of the
statement must find it by the filter's index (and on PostgreSQL throw no row away by a filter)."""

from __future__ import annotations

import base64

import pytest
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
    _assert_found_by_index(client, runtime, "from", CUSTOMER, "messages.from_number =", "ix_messages_from_number_seq")


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_provider_message_id_without_its_provider_is_found_by_its_index(client, runtime):
    index = "ix_messages_provider_message_id_seq"
    _assert_found_by_index(client, runtime, "providerMessageId", "customer-1", "messages.provider_message_id =", index)


def _assert_found_by_index(client, runtime, parameter: str, value: str, compared: str, index: str) -> None:
    """The read API's `parameter` at `value` finds the customer's message, and its statement (the one
    that has `compared`) finds it by `index`."""
    post_standard(client, inbound_body("customer-1", sender=CUSTOMER))
    _messages_of_other_senders(runtime, OTHER_MESSAGES)

    with statements_sent(runtime.db.engine, lambda statement: compared in statement) as sent:
        found = client.get("/api/v1/messages", headers=A, query_string={parameter: value}).get_json()["messages"]

    assert [message["providerMessageId"] for message in found] == ["customer-1"]
    [(statement, parameters)] = sent
    with runtime.db.engine.connect() as connection:
        lines = plan(connection, statement, parameters, analyze=True)
        connection.rollback()
    assert any(index in line for line in lines), lines
    if runtime.db.dialect == "postgresql":
        # Not only named: a scan of the key's index on the tenant alone throws nothing away either.
        assert rows_thrown_away(lines) < 100, lines
