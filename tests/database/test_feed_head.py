"""The feed's head (database/feed.py): a reader that reads no further than it never finds, later, an event
below one it has passed, while writers commit side by side, out of their ids' order, and some roll back.
On PostgreSQL writers no longer wait for each other; SQLite has one writer, and its head is the last id."""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import sqlalchemy as sa

from tests.support.feed_events import feed_row
from tests.support.media_uploads import A
from tests.support.standard import inbound_body, post_standard
from webhook_service.database import feed
from webhook_service.database.engine import Database
from webhook_service.database.limits import DatabaseLimits
from webhook_service.database.tables import EVENTS

TENANT = "00000000-0000-0000-0000-000000000000"


def event(number: int) -> dict:
    return feed_row(TENANT, number=number)


def ids_after(connection: sa.Connection, after: int) -> list[int]:
    return list(connection.execute(sa.select(EVENTS.c.id).where(EVENTS.c.id > after)).scalars())


def test_an_event_in_flight_keeps_the_head_below_it_and_below_later_ones(database_url):
    db = Database(database_url)
    try:
        with db.engine.connect() as reader:
            start = feed.head(reader)
            reader.commit()
        if db.dialect != "postgresql":
            with db.writing() as connection:
                feed.append(connection, [event(1)])
            with db.engine.connect() as reader:
                assert feed.head(reader) == max(ids_after(reader, start))
            return

        with db.engine.connect() as first, db.engine.connect() as second, db.engine.connect() as reader:
            first.begin()
            feed.append(first, [event(1)])
            (first_id,) = ids_after(first, start)

            # A later writer commits while the first is still open: it does not wait for it.
            committed = threading.Event()

            def later_writer() -> None:
                with second.begin():
                    feed.append(second, [event(2), event(3)])
                committed.set()

            writer = threading.Thread(target=later_writer)
            writer.start()
            writer.join(timeout=10)
            assert committed.is_set(), "a writer waited for another's commit"
            later_ids = ids_after(reader, start)
            reader.commit()
            assert later_ids and min(later_ids) > first_id  # committed, and visible past the first's id

            # The head stays below the event in flight, so a reader does not pass it: nor the later ones.
            head = feed.head(reader)
            assert start <= head < first_id
            assert [i for i in ids_after(reader, start) if i <= head] == []
            reader.commit()

            first.commit()
            head = feed.head(reader)
            assert head >= max(later_ids)
            assert sorted(i for i in ids_after(reader, start) if i <= head) == [first_id, *sorted(later_ids)]
    finally:
        db.dispose()


@contextmanager
def _older_versions_writer(db: Database) -> Iterator[tuple[sa.Connection, int]]:
    """A writer as versions before 2026-12 wrote: the feed's one lock taken exclusively, then its event, no
    bound; its connection (in the transaction, to commit) and its event's id."""
    with db.engine.connect() as connection:
        connection.begin()
        connection.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": feed.OLDER_WRITERS_KEY})
        before = connection.scalar(sa.select(sa.func.coalesce(sa.func.max(EVENTS.c.id), 0)))
        feed.INSERT_EVENTS.run(connection, event(1))
        (written,) = ids_after(connection, before)
        yield connection, written
        if connection.in_transaction():
            connection.rollback()


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_an_older_versions_writer_in_flight_is_waited_for_and_named(database_url, caplog, monkeypatch):
    """During an upgrade that left a process of the older version running, its writer takes no bound: the
    head waits until its lock is let go (it commits), rather than pass its event, and says what runs."""
    monkeypatch.setattr(feed, "_warned_at", None)
    db = Database(database_url)
    try:
        with _older_versions_writer(db) as (writer, written), db.engine.connect() as reader:
            threading.Timer(0.04, writer.commit).start()
            began = time.monotonic()
            with caplog.at_level(logging.ERROR, logger="webhook_service.database"):
                settled = feed.head(reader)
            assert settled >= written  # committed meanwhile, and not passed before that
            assert time.monotonic() - began >= 0.03
    finally:
        db.dispose()
    assert [r.getMessage() for r in caplog.records] == ["feed_written_by_older_version"]


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_an_older_versions_writer_that_keeps_writing_makes_the_feed_unavailable(client, runtime, monkeypatch):
    """An older version's writer that holds its lock past head()'s looks: the feed's readers get an outage
    (the events API 503), not events out of order."""
    monkeypatch.setattr(feed, "OLDER_WRITER_PAUSE_SECONDS", 0.001)
    assert post_standard(client, inbound_body("m-new")).status_code == 200  # something new for the tenant
    with _older_versions_writer(runtime.db):
        with runtime.db.engine.connect() as reader, pytest.raises(feed.FeedUnsettled):
            feed.head(reader)
        response = client.get("/api/v1/events", headers=A)
        assert response.status_code == 503 and response.headers["Retry-After"]
    assert client.get("/api/v1/events", headers=A).status_code == 200  # gone: read as before


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_writer_that_stops_after_its_bound_holds_the_head_back_until_the_server_ends_it(database_url):
    """A writer whose process stops between its bound and its commit (frozen, its network gone) would hold
    every reader back for good: once it holds the bound, the server ends its session after the client's
    answer timeout idle (here 0.3 s of statement timeout and 1 s of grace), its event rolled back."""
    db = Database(database_url, DatabaseLimits(statement_timeout=0.3))
    try:
        with db.engine.connect() as writer, db.engine.connect() as reader:
            start = feed.head(reader)
            reader.commit()
            writer.begin()
            feed.append(writer, [event(1)])
            (stopped,) = ids_after(writer, start)
            began = time.monotonic()
            assert writer.exec_driver_sql("SHOW idle_in_transaction_session_timeout").scalar() == "1300ms"
            # The writer says nothing more. The head stays below its event until the server ends it.
            while feed.head(reader) < stopped:
                reader.commit()
                assert time.monotonic() - began < 10, "the head stayed below the stopped writer's event"
                time.sleep(0.05)
            assert time.monotonic() - began >= 1.2
            assert stopped not in ids_after(reader, start)
            with pytest.raises(sa.exc.DBAPIError, match="idle-in-transaction timeout"):
                writer.commit()
    finally:
        db.dispose()


def test_a_writer_without_the_services_limits_keeps_the_servers_idle_setting(database_url):
    """The migrations' engine has no statement timeout: its writers leave the server's setting alone."""
    db = Database(database_url, DatabaseLimits(statement_timeout=None))
    try:
        with db.engine.connect() as writer:
            writer.begin()
            feed.append(writer, [event(1)])
            if db.dialect == "postgresql":
                assert writer.exec_driver_sql("SHOW idle_in_transaction_session_timeout").scalar() == "0"
            writer.rollback()
    finally:
        db.dispose()


# PostgreSQL's only: SQLite admits one writer at a time, so nothing commits out of its ids' order.
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_reader_bounded_by_the_head_misses_nothing_among_racing_writers(database_url):
    """Twelve threads append 1-4 events a transaction, pausing before and after, one transaction in eight
    rolled back; a reader reads what is past its cursor up to the head, over and over. Afterwards every
    committed event at or below the reader's last cursor was read by it."""
    db = Database(database_url)
    stop = threading.Event()
    committed: list[int] = []
    failures: list[BaseException] = []

    def writer(number: int) -> None:
        chance = random.Random(number)
        try:
            with db.engine.connect() as connection:
                while not stop.is_set():
                    transaction = connection.begin()
                    time.sleep(chance.random() * 0.002)
                    feed.append(connection, [event(number) for _ in range(chance.randint(1, 4))])
                    ids = connection.execute(
                        sa.text(
                            "SELECT id FROM events WHERE CAST(CAST(xmin AS text) AS bigint) = txid_current() % 4294967296"
                        )
                    ).scalars()
                    mine = list(ids)
                    time.sleep(chance.random() * 0.004)
                    if chance.random() < 0.125:
                        transaction.rollback()
                        continue
                    transaction.commit()
                    committed.extend(mine)
        except BaseException as error:  # noqa: BLE001  # reported by the test's thread
            failures.append(error)

    writers = [threading.Thread(target=writer, args=(number,)) for number in range(12)]
    for thread in writers:
        thread.start()
    cursor, read = 0, set()
    try:
        with db.engine.connect() as reader:
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline:
                head = feed.head(reader)
                rows = reader.execute(
                    sa.select(EVENTS.c.id).where(EVENTS.c.id > cursor, EVENTS.c.id <= head).order_by(EVENTS.c.id)
                )
                read.update(rows.scalars())
                reader.commit()
                cursor = max(cursor, head)
    finally:
        stop.set()
        for thread in writers:
            thread.join(timeout=30)
        db.dispose()
    assert not failures, failures
    assert len(committed) > 200  # the writers did write, side by side
    missed = sorted(i for i in committed if i <= cursor and i not in read)
    assert missed == []
    assert cursor > 0
