"""A batch PostgreSQL fails as a deadlock's victim, or as one it could not serialize, stored nothing: the
group commit runs it again (engine.py, `_commit_with_retries`) instead of reporting an outage, which would
answer the provider 503 or spool its webhook for later. A batch that keeps failing so is reported after
a few tries. So is a batch whose session the server ended, idle too long while it held its place in the
event feed (database/feed.py): once more."""

from __future__ import annotations

import logging
import threading
import time

import pytest
import sqlalchemy as sa

from tests.support.feed_events import feed_row
from webhook_service.database import engine as engine_module
from webhook_service.database import feed
from webhook_service.database.engine import Database
from webhook_service.database.limits import DatabaseLimits
from webhook_service.database.tables import EVENTS

pytestmark = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)

FIRST, SECOND = 0x5EED_0001, 0x5EED_0002


def _lock(connection: sa.Connection, key: int) -> None:
    connection.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})


def test_a_deadlocks_victim_runs_again(runtime, caplog):
    """The batch takes FIRST then SECOND; another transaction holds SECOND and then asks for FIRST. The
    batch, waiting longest, is the victim (the other waits 30 s before it looks for a deadlock); its
    second run waits for the other to commit, and succeeds."""
    runs: list[int] = []
    batch_waits = threading.Event()

    def work(connection: sa.Connection) -> str:
        runs.append(len(runs) + 1)
        _lock(connection, FIRST)
        batch_waits.set()
        _lock(connection, SECOND)
        return "stored"

    other = sa.create_engine(runtime.db.url, poolclass=sa.pool.NullPool)
    result: list[str] = []
    try:
        with other.connect() as connection, connection.begin():
            connection.execute(sa.text("SET LOCAL deadlock_timeout = '30s'"))
            _lock(connection, SECOND)
            batch = threading.Thread(target=lambda: result.append(runtime.db.group_commit.run(work)))
            with caplog.at_level(logging.WARNING, logger="webhook_service.database"):
                batch.start()
                assert batch_waits.wait(10)
                _lock(connection, FIRST)  # the deadlock: PostgreSQL fails the batch's transaction
            # Here the other holds both; the batch's second run waits for its commit.
        batch.join(timeout=20)
    finally:
        other.dispose()
    assert result == ["stored"]
    assert runs == [1, 2]
    [retried] = [record for record in caplog.records if record.getMessage() == "group_commit_retried"]
    assert retried.sqlstate == "40P01" and retried.units == 1


def test_a_batch_that_keeps_failing_so_is_reported(runtime, monkeypatch):
    """A batch failed as a victim every time is not run forever: after the retries its units are told
    the error."""
    monkeypatch.setattr(engine_module, "MAX_VICTIM_RETRIES", 2)
    runs: list[int] = []

    def work(connection: sa.Connection) -> None:
        runs.append(1)
        # What PostgreSQL answers a transaction it cannot serialize, raised by the server itself.
        connection.execute(
            sa.text("DO $$ BEGIN RAISE EXCEPTION 'not serializable' USING ERRCODE = 'serialization_failure'; END $$")
        )

    with pytest.raises(sa.exc.OperationalError, match="not serializable"):
        runtime.db.group_commit.run(work)
    assert len(runs) == 3, "the first run and two retries"


def test_a_batch_whose_session_the_server_ended_while_it_stood_still_runs_again(runtime, caplog):
    """The process stops for longer than the feed writers' idle limit between its batch's last statement and
    the commit (here a pause before the commit; 0.3 s of statement timeout and 1 s of grace): PostgreSQL
    ends the session and rolls the batch back, and the group commit runs it again on a new connection,
    stored once."""
    database = Database(runtime.db.url, DatabaseLimits(statement_timeout=0.3))
    database.group_commit.run(lambda connection: connection.exec_driver_sql("SELECT 1"))  # connected, set up
    pauses = [1.8]
    sa.event.listen(database.engine, "commit", lambda _connection: time.sleep(pauses.pop()) if pauses else None)
    runs: list[int] = []

    def work(connection: sa.Connection) -> str:
        runs.append(1)
        connection.exec_driver_sql("SELECT 1")  # the transaction has begun: the feed's rows go in it
        feed.append(connection, [feed_row()])
        return "stored"

    try:
        with caplog.at_level(logging.WARNING, logger="webhook_service.database"):
            assert database.group_commit.run(work) == "stored"
        with database.reading() as session:
            assert session.scalar(sa.select(sa.func.count()).select_from(EVENTS)) == 1
    finally:
        database.dispose()
    assert len(runs) == 2
    [retried] = [record for record in caplog.records if record.getMessage() == "group_commit_retried"]
    assert retried.sqlstate == "25P03" and retried.units == 1
