"""A batch PostgreSQL fails as a deadlock's victim, or as one it could not serialize, stored nothing: the
group commit runs it again (engine.py, `_commit_with_retries`) instead of reporting an outage, which would
answer the provider 503 or spool its webhook for later. A batch that keeps failing so is reported after
a few tries."""

from __future__ import annotations

import logging
import threading

import pytest
import sqlalchemy as sa

from webhook_service.database import engine as engine_module

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
