"""The group commit keeps its connection from one batch to the next (engine.py, `_KeptConnection`): what
the pool did at each checkout must still happen where it matters. A connection the server dropped while
it was kept costs no webhook, an idle one goes back to the pool, a failed batch does not keep a broken
one, and a forked child never touches its parent's."""

from __future__ import annotations

import os

import pytest
import sqlalchemy as sa
from sqlalchemy import event

from tests.support.standard import inbound_body, post_standard
from webhook_service.database import engine as engine_module
from webhook_service.database.engine import Database
from webhook_service.database.tables import Message


def _backend_pid(connection: sa.Connection) -> int:
    if connection.dialect.name == "sqlite":
        return id(connection.connection.dbapi_connection)
    return connection.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()


def _checkouts(database: Database) -> list[int]:
    taken: list[int] = []
    event.listen(database.engine, "checkout", lambda *_: taken.append(1))
    return taken


def _stored_messages(database: Database) -> int:
    with database.reading() as session:
        return session.scalar(sa.select(sa.func.count()).select_from(Message)) or 0


def test_batches_in_a_row_share_one_connection(runtime):
    database = runtime.db
    taken = _checkouts(database)
    seen = {database.group_commit.run(_backend_pid) for _ in range(5)}
    assert len(seen) == 1
    assert len(taken) == 1, "one checkout for five batches"


def test_an_idle_connection_goes_back_to_the_pool(runtime, monkeypatch):
    database = runtime.db
    database.group_commit.run(_backend_pid)
    monkeypatch.setattr(engine_module, "KEEP_CONNECTION_SECONDS", 0.0)
    taken = _checkouts(database)
    database.group_commit.run(_backend_pid)
    assert len(taken) == 1, "kept past its time: taken from the pool again (and checked there)"


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_kept_connection_the_server_dropped_costs_no_webhook(client, runtime):
    """The server ends the kept connection between two webhooks (as a restart or an idle timeout
    would): the second webhook is still stored at once, not refused, spooled or held for an outage."""
    assert post_standard(client, inbound_body("m-1")).status_code == 200
    kept = runtime.db.group_commit.run(_backend_pid)
    killer = sa.create_engine(runtime.db.url, poolclass=sa.pool.NullPool)
    with killer.connect() as connection:
        assert connection.exec_driver_sql(f"SELECT pg_terminate_backend({kept})").scalar_one()
    killer.dispose()

    response = post_standard(client, inbound_body("m-2"))
    assert response.status_code == 200
    assert _stored_messages(runtime.db) == 2
    assert runtime.db.group_commit.run(_backend_pid) != kept
    assert runtime.spool is None or runtime.spool.report()["depth"] == 0, "stored, not spooled"


def test_a_failed_batch_gives_its_connection_back(runtime):
    database = runtime.db
    first = database.group_commit.run(_backend_pid)

    def broken(connection: sa.Connection) -> None:
        raise RuntimeError("a unit's own failure")

    with pytest.raises(RuntimeError):
        database.group_commit.run(broken)
    taken = _checkouts(database)
    database.group_commit.run(_backend_pid)
    assert len(taken) == 1, "after a failure the next batch takes a connection from the pool"
    assert first  # the first batch ran on a connection of its own


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_forked_child_leaves_its_parents_connection_alone(runtime):
    database = runtime.db
    parents = database.group_commit.run(_backend_pid)
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover  # the child reports through the pipe
        try:
            database.engine.dispose(close=False)  # as a forked process does (delivery/books_process.py)
            os.write(write, str(database.group_commit.run(_backend_pid)).encode())
        finally:
            os._exit(0)
    os.close(write)
    childs = int(os.read(read, 64).decode())
    os.waitpid(child, 0)
    assert childs != parents, "the child used a connection of its own"
    assert database.group_commit.run(_backend_pid) == parents, "the parent's kept connection still works"


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_connection_lost_in_a_batchs_commit_is_reported_as_lost(runtime):
    """The server ends the batch's connection while the batch waits to commit (a restart, an
    administrator's pg_terminate_backend): what the units are told is that loss, which the intake answers
    with its outage handling (spool or 503), not an error about the transaction's state that would hide
    it (and answer 500)."""
    database = runtime.db
    database.group_commit.run(_backend_pid)  # a fresh connection: nothing to run again on another
    database.group_commit._kept.close()
    killer = sa.create_engine(runtime.db.url, poolclass=sa.pool.NullPool)

    def terminate_before_commit(connection: sa.Connection) -> None:
        with killer.connect() as other:
            assert other.exec_driver_sql(f"SELECT pg_terminate_backend({_backend_pid(connection)})").scalar_one()

    def work(connection: sa.Connection) -> None:
        connection.exec_driver_sql("SELECT 1")
        sa.event.listen(connection, "commit", terminate_before_commit, once=True)

    try:
        with pytest.raises(sa.exc.OperationalError) as lost:
            database.group_commit.run(work)
    finally:
        killer.dispose()
    assert lost.value.connection_invalidated
    assert database.group_commit.run(_backend_pid)  # and the next batch is stored on a new connection
