"""Ids the service makes are time-ordered (UUIDv7 for rows, its hex digits for request ids): successive
ones sort in the order they were made, so that a table's unique index takes them side by side instead of
on a random page (database/tables.py `new_id`). Their time is the clock's, however many a process makes
in a millisecond, and they stay unguessable: 32 random bits in each, after a counter that starts at a
random value in each millisecond."""

from __future__ import annotations

import os
import re
import time
import uuid

import sqlalchemy as sa

from tests.support.standard import inbound_body, post_standard
from webhook_service.database.tables import Message, new_id
from webhook_service.observability.request_ids import request_id_for

# More ids than milliseconds pass while a process makes them: what a busy web worker does (three ids a
# webhook, a thousand webhooks a second).
MANY = 20_000


def _milliseconds(value: str) -> int:
    """The time a UUIDv7 says it was made, in Unix milliseconds (its first 48 bits)."""
    return uuid.UUID(value).int >> 80


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


def test_ids_made_faster_than_one_a_millisecond_keep_the_clocks_time():
    # The uuid6 package kept them in order by adding a millisecond to the time of every id made within the
    # same millisecond: these 20,000 came out some 20 s ahead of the clock.
    started = time.time_ns() // 1_000_000
    rows = [new_id() for _ in range(MANY)]
    requests = [request_id_for({}) for _ in range(MANY)]
    finished = time.time_ns() // 1_000_000
    for made in (rows, requests):
        assert made == sorted(made) and len(set(made)) == MANY
        assert started <= _milliseconds(made[0]) <= _milliseconds(made[-1]) <= finished


def test_processes_forked_at_the_same_moment_make_different_ids():
    # gunicorn forks its workers from one process: a random generator copied with it would give each
    # worker the same "random" bits.
    new_id()
    reader, writer = os.pipe()
    children = []
    for _ in range(2):
        child = os.fork()
        if child == 0:  # pragma: no cover  # the child's own coverage is not collected
            os.write(writer, (new_id() + request_id_for({}) + "\n").encode())
            os._exit(0)
        children.append(child)
    for child in children:
        assert os.waitstatus_to_exitcode(os.waitpid(child, 0)[1]) == 0
    os.close(writer)
    with os.fdopen(reader) as lines:
        made = lines.read().split()
    assert len(made) == 2
    (row_one, request_one), (row_two, request_two) = ((line[:36], line[36:]) for line in made)
    # Their random last 32 bits (8 hex digits), not only the counter before them.
    assert row_one[-8:] != row_two[-8:] and request_one[-8:] != request_two[-8:]
