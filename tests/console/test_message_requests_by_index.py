"""A message's requests are found by index, not by reading the request log (PostgreSQL; migration 0012).

The message page lists the requests that named the message, and the request log can be searched by
provider message id. Both used to read the log backwards from its newest entry until they had found their
page: for a message a day old on a busy service that was millions of entries, past the statement timeout,
and the page answered 503. Here the message is older than 20,000 other requests; both pages must find its
two requests reading a handful of entries. (SQLite has no index of the kind: there they still read the log,
tested for their results in test_pages.py.)"""

from __future__ import annotations

import re

import pytest
import sqlalchemy as sa

from tests.support.plans import plan, rows_thrown_away, statements_sent, without_statement_timeout
from tests.support.standard import inbound_body, post_standard, status_body

OTHER_REQUESTS = 20_000

pytestmark = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)


def _fill_request_log_with_other_messages(engine: sa.Engine) -> None:
    with engine.begin() as connection:
        without_statement_timeout(connection)
        connection.exec_driver_sql(
            "INSERT INTO request_log (request_id, received_at, provider, connection, tenant_id, outcome,"
            " http_status, method, url, message_ids, provider_message_ids, addresses)"
            " SELECT md5(n::text), now(), 'standard', 'main', %(tenant)s, 'accepted', 200, 'POST', '/webhooks/x',"
            " jsonb_build_array('m-' || n), jsonb_build_array('other-' || n), '[\"+15550001111\"]'::jsonb"
            " FROM generate_series(1, %(count)s) AS n",
            {"tenant": "00000000-0000-0000-0000-000000000000", "count": OTHER_REQUESTS},
        )
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.exec_driver_sql("ANALYZE request_log")


def test_a_messages_requests_are_found_without_reading_the_log(admin, client, runtime):
    inbound = post_standard(client, inbound_body("old-1"))
    report = post_standard(client, status_body("old-1", "delivered"))
    named = {inbound.headers["X-Request-Id"], report.headers["X-Request-Id"]}
    _fill_request_log_with_other_messages(runtime.db.engine)
    [message_id] = re.findall(
        r"/console/messages/([0-9a-f-]+)\"", admin.get("/console/messages?provider_message_id=old-1").get_data(True)
    )

    for url in (f"/console/messages/{message_id}", "/console/requests?provider_message_id=old-1"):
        with statements_sent(runtime.db.engine, lambda statement: "FROM request_log" in statement) as sent:
            response = admin.get(url)
        assert response.status_code == 200, url
        assert set(re.findall(r"[0-9a-f]{32}", response.get_data(as_text=True))) >= named, url
        assert sent, url
        with runtime.db.engine.connect() as connection:
            for statement, parameters in sent:
                passed_over = rows_thrown_away(plan(connection, statement, parameters, analyze=True))
                assert passed_over < 100, f"{url} read {passed_over} other requests' entries to find 2"
            connection.rollback()


def test_the_index_pays_for_its_entries_as_they_come(runtime):
    """fastupdate off: with GIN's default, the cleanup of its pending list falls on whichever insert fills
    it, and a group commit batch of webhooks would wait for thousands of entries (tables.py)."""
    with runtime.db.engine.connect() as connection:
        options = connection.exec_driver_sql(
            "SELECT reloptions FROM pg_class WHERE relname = 'ix_request_log_provider_message_ids'"
        ).scalar_one()
    assert options == ["fastupdate=off"]
