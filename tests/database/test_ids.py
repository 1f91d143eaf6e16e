"""Ids the service makes are time-ordered (UUIDv7 for rows, its hex digits for request ids): successive
ones sort in the order they were made, so that a table's unique index takes them side by side instead of
on a random page (database/tables.py `new_id`). They stay unguessable: 74 random bits after the time."""

from __future__ import annotations

import re
import uuid

import sqlalchemy as sa

from tests.support.standard import inbound_body, post_standard
from webhook_service.database.tables import Message, new_id


def test_row_ids_are_uuid7_in_the_order_they_are_made():
    ids = [new_id() for _ in range(2000)]
    assert all(uuid.UUID(value).version == 7 for value in ids)
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)


def test_messages_and_request_ids_of_successive_webhooks_sort_in_arrival_order(client, runtime):
    request_ids = []
    for number in range(5):
        answer = post_standard(client, inbound_body(f"m-order-{number}"))
        assert answer.status_code == 200
        request_ids.append(answer.headers["X-Request-Id"])
    assert all(re.fullmatch(r"[0-9a-f]{32}", value) for value in request_ids)
    assert request_ids == sorted(request_ids)
    with runtime.db.reading() as session:
        ids = list(session.scalars(sa.select(Message.id).order_by(Message.seq)))
    assert len(ids) == 5 and ids == sorted(ids)
    assert all(uuid.UUID(value).version == 7 for value in ids)
