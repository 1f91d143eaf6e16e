"""The console's rate limits counted in the database (database/rate_limits.py), on SQLite and PostgreSQL:
of processes hitting one key at once, exactly the limit's number get through; hits whose window has
ended no longer count and are deleted as others come; the fixed window's operations count alike; a database that does not answer is the storage's
error (the console then counts in memory). And migration 0007, which makes the table."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from alembic import command
from limits import parse
from limits.errors import StorageError
from limits.storage import MemoryStorage
from limits.strategies import FixedWindowRateLimiter, MovingWindowRateLimiter

from tests.support.migrations import schema_differences
from webhook_service.database.engine import Database, make_engine
from webhook_service.database.migrate import alembic_config
from webhook_service.database.rate_limits import SWEEP_BATCH, DatabaseStorage
from webhook_service.database.tables import RATE_LIMIT_HITS


@pytest.fixture
def databases(database_url):
    # Two Database objects: two engines and connection pools, as two web processes have.
    pair = [Database(database_url), Database(database_url)]
    yield pair
    for database in pair:
        database.dispose()


def _rows(db: Database) -> list[tuple[str, datetime]]:
    with db.reading() as session:
        return [tuple(row) for row in session.execute(sa.select(RATE_LIMIT_HITS.c.key, RATE_LIMIT_HITS.c.expires_at))]


def test_of_processes_hitting_one_key_at_once_exactly_the_limit_get_through(databases):
    limiters = [MovingWindowRateLimiter(DatabaseStorage(database)) for database in databases]
    five = parse("5/minute")
    contenders = 12
    start = threading.Barrier(contenders)
    allowed: list[bool] = [False] * contenders

    def contend(index: int) -> None:
        start.wait()
        allowed[index] = limiters[index % 2].hit(five, "race", "key")

    threads = [threading.Thread(target=contend, args=(index,)) for index in range(contenders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sum(allowed) == 5, allowed
    assert len(_rows(databases[0])) == 5  # the refused ones left nothing
    assert not limiters[1].hit(five, "race", "key")
    assert limiters[0].hit(five, "race", "another key")
    assert limiters[0].hit(parse("5/hour"), "race", "key")  # another limit on the same key: a count of its own


def test_ended_hits_no_longer_count_and_are_deleted_as_others_come(databases):
    db = databases[0]
    storage = DatabaseStorage(db)
    limiter = MovingWindowRateLimiter(storage)
    two = parse("2/minute")
    assert limiter.hit(two, "window") and limiter.hit(two, "window") and not limiter.hit(two, "window")
    [(key, expires_at), _] = _rows(db)
    # Those two hits' window over (as a minute later), and many ended hits of other keys.
    now = datetime.now(UTC)
    ended = [{"key": f"{number:064x}", "expires_at": now - timedelta(seconds=number + 1)} for number in range(250)]
    with db.writing() as connection:
        connection.execute(sa.update(RATE_LIMIT_HITS).values(expires_at=now - timedelta(milliseconds=1)))
        connection.execute(sa.insert(RATE_LIMIT_HITS), ended)
    assert limiter.get_window_stats(two, "window").remaining == 2
    # Each hit deletes up to SWEEP_BATCH ended ones, whatever their key, refused or not.
    assert limiter.hit(two, "window")
    assert len(_rows(db)) == 252 + 1 - SWEEP_BATCH
    assert limiter.hit(two, "window") and not limiter.hit(two, "window")
    rows = _rows(db)
    assert len(rows) == 2 and {row[0] for row in rows} == {key}
    assert all(row[1] > expires_at for row in rows)
    reset_at, remaining = limiter.get_window_stats(two, "window")
    assert remaining == 0 and now.timestamp() + 59 < reset_at < now.timestamp() + 61


def test_clear_and_reset(databases):
    storage = DatabaseStorage(databases[0])
    limiter = MovingWindowRateLimiter(storage)
    one = parse("1/minute")
    assert limiter.hit(one, "a") and limiter.hit(one, "b") and not limiter.hit(one, "a")
    limiter.clear(one, "a")
    assert limiter.hit(one, "a") and not limiter.hit(one, "b")
    assert storage.reset() == 2 and _rows(databases[0]) == []
    assert storage.check()


def test_a_fixed_window_is_counted_across_processes_and_ends_for_every_hit_at_once(databases):
    """The fixed window's operations (the library's other strategies use them): two processes share one
    count, every hit of a window ends with it, and then a new window begins."""
    limiters = [FixedWindowRateLimiter(DatabaseStorage(database)) for database in databases]
    three = parse("3/minute")
    assert [limiters[n % 2].hit(three, "fixed") for n in range(4)] == [True, True, True, False]
    storage = DatabaseStorage(databases[0])
    key = three.key_for("fixed")
    # The library's fixed window counts the refused hit too, with any storage: as its memory storage does.
    memory = FixedWindowRateLimiter(MemoryStorage())
    assert [memory.hit(three, "fixed") for _ in range(4)] == [True, True, True, False]
    assert storage.get(key) == memory.storage.get(key) == 4
    ends = {expires_at for _, expires_at in _rows(databases[0])}
    assert len(ends) == 1, "the window's hits end together"
    assert storage.get_expiry(key) == pytest.approx(ends.pop().timestamp())
    with databases[0].writing() as connection:  # the window over, as a minute later
        connection.execute(sa.update(RATE_LIMIT_HITS).values(expires_at=datetime.now(UTC) - timedelta(seconds=1)))
    assert storage.get(key) == 0
    assert storage.incr(key, 60) == 1  # a new window, ending a minute from now
    assert datetime.now(UTC).timestamp() + 59 < storage.get_expiry(key) < datetime.now(UTC).timestamp() + 61


def test_a_database_that_does_not_answer_is_the_storages_error():
    db = Database("postgresql+psycopg://postgres@127.0.0.1:9/nothing")
    try:
        storage = DatabaseStorage(db, wrap_exceptions=True)
        with pytest.raises(StorageError):
            MovingWindowRateLimiter(storage).hit(parse("5/minute"), "down")
        with pytest.raises(StorageError):  # and while the outage is held: refused at once, the same way
            MovingWindowRateLimiter(storage).hit(parse("5/minute"), "down")
        assert not storage.check()
    finally:
        db.dispose()


def test_0007_downgrades_upgrades_and_matches_the_models(database_url):
    config = alembic_config(database_url)
    engine = make_engine(database_url)
    try:
        command.downgrade(config, "0006")
        try:
            assert "rate_limit_hits" not in sa.inspect(engine).get_table_names()
        finally:
            command.upgrade(config, "head")
        # A pooled SQLite connection that read the schema without the table still answers its index list
        # empty: a new connection.
        engine.dispose()
        indexes = {index["name"]: index["column_names"] for index in sa.inspect(engine).get_indexes("rate_limit_hits")}
        assert indexes == {
            "ix_rate_limit_hits_key_expires_at": ["key", "expires_at"],
            "ix_rate_limit_hits_expires_at": ["expires_at"],
        }
        with engine.connect() as connection:
            assert schema_differences(connection) == []
    finally:
        engine.dispose()
