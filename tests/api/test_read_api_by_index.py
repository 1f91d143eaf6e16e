"""The read API's filters that name one message or one sender find it by an index, not by reading every
newer message.

- `from` (migration 0014): the read API's filter (and the console's) read the tenant's messages from the
  newest back until the page was full: every one of them for a customer's number seen a few times, past
  the statement timeout on a busy service. Now `ix_messages_from_number_seq`.
- `providerMessageId` without `provider` (migration 0016): PostgreSQL read every message of a large table
  (or, with sequential scans priced out, the tenant's), since the key's unique index led with the tenant
  and the provider. The key now leads with the provider's id, which makes the filter its prefix. SQLite,
  which keeps no statistics, still prefers the tenant's index there (it needs no sort): the test holds
  it to the right answer only.

Here the message sought is older than 20,000 others; on PostgreSQL the statement's plan must throw away
no row it read (SQLite, for `from`: it searches the sender's index)."""

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


def test_a_message_is_found_by_the_providers_id_without_the_provider_by_the_keys_index(client, runtime):
    post_standard(client, inbound_body("customer-1", sender=CUSTOMER))
    _messages_of_other_senders(runtime, OTHER_MESSAGES)

    with statements_sent(runtime.db.engine, lambda statement: "messages.provider_message_id =" in statement) as sent:
        found = client.get("/api/v1/messages", headers=A, query_string={"providerMessageId": "customer-1"})

    assert [message["from"] for message in found.get_json()["messages"]] == [CUSTOMER]
    [(statement, parameters)] = sent
    if runtime.db.dialect == "postgresql":
        with runtime.db.engine.connect() as connection:
            lines = plan(connection, statement, parameters, analyze=True)
            connection.rollback()
        assert rows_thrown_away(lines) < 100, lines
        assert any("uq_messages_provider_message_id_provider_tenant_id" in line for line in lines), lines
