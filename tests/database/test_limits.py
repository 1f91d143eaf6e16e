"""The bounds on waiting for the database (database/limits.py): what a PostgreSQL connection is set up
with, what the server cancels, what the answer watchdog abandons, and what the outage hold refuses. The
whole service with a frozen server is tests/service/test_frozen_database.py."""

from __future__ import annotations

import os
import socket
import time

import pytest
import sqlalchemy as sa

from webhook_service.database.answer_watchdog import (
    IDLE_TICKS,
    TICK_SECONDS,
    AnswerWatchdog,
    Wait,
    _shut_down,
    socket_identity,
)
from webhook_service.database.engine import Database
from webhook_service.database.limits import DatabaseLimits
from webhook_service.database.outage import DatabaseUnavailable, OutageHold
from webhook_service.runtime import Runtime
from webhook_service.settings import load_settings


@pytest.fixture
def postgres(_postgres_database):
    database = Database(_postgres_database, DatabaseLimits(statement_timeout=0.5))
    yield database
    database.dispose()


def test_postgres_connections_carry_keepalives_a_user_timeout_and_the_statement_timeout(postgres):
    with postgres.engine.connect() as connection:
        assert connection.exec_driver_sql("SHOW statement_timeout").scalar() == "500ms"
        descriptor = connection.connection.dbapi_connection.fileno()
        with socket.socket(fileno=os.dup(descriptor)) as duplicate:
            assert duplicate.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
            assert duplicate.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 10
            # tcp_user_timeout: the answer timeout, statement_timeout + 1 s, in milliseconds.
            assert duplicate.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) == 1500


def test_a_statement_over_the_timeout_is_cancelled_by_the_server_and_nothing_is_held(postgres):
    started = time.monotonic()
    with pytest.raises(sa.exc.OperationalError) as raised, postgres.reading() as session:
        session.execute(sa.text("SELECT pg_sleep(5)"))
    assert time.monotonic() - started < 3  # the 500 ms timeout, not the 5 s sleep (room for a loaded machine)
    assert raised.value.orig.sqlstate == "57014"  # query_canceled
    postgres.ping()  # the server answered: no outage, and the pool's connections are fine


def test_the_database_settings_reach_the_connections(_postgres_database, tmp_path):
    environ = {"DATABASE_URL": _postgres_database, "WEBHOOK__DATABASE__STATEMENT_TIMEOUT_SECONDS": "7"}
    runtime = Runtime(load_settings(environ=environ, overrides={"data_dir": str(tmp_path)}))
    try:
        with runtime.db.reading() as session:
            assert session.execute(sa.text("SHOW statement_timeout")).scalar() == "7s"
    finally:
        runtime.close()


def test_a_migration_engine_has_no_statement_limit(_postgres_database):
    database = Database(_postgres_database, DatabaseLimits(statement_timeout=None))
    try:
        with database.engine.connect() as connection:
            assert connection.exec_driver_sql("SHOW statement_timeout").scalar() == "0"
    finally:
        database.dispose()


class TestAnswerWatchdog:
    def test_a_wait_past_its_deadline_has_its_socket_shut_down(self):
        watchdog = AnswerWatchdog(0.3)
        ours, server = socket.socketpair()
        with ours, server:
            started = time.monotonic()
            wait = watchdog.begin(ours.fileno(), socket_identity(ours.fileno()))
            assert ours.recv(1) == b""  # the server never answers: woken by the shutdown
            watchdog.end(wait)
            elapsed = time.monotonic() - started
        assert wait.abandoned
        assert 0.3 <= elapsed < 0.3 + 3 * TICK_SECONDS

    def test_an_answered_wait_is_left_alone(self):
        watchdog = AnswerWatchdog(0.3)
        ours, server = socket.socketpair()
        with ours, server:
            wait = watchdog.begin(ours.fileno(), socket_identity(ours.fileno()))
            server.sendall(b"x")
            assert ours.recv(1) == b"x"
            watchdog.end(wait)
            time.sleep(0.3 + 2 * TICK_SECONDS)
            server.sendall(b"y")
            assert ours.recv(1) == b"y"
        assert not wait.abandoned

    def test_its_thread_ends_once_idle_and_the_next_wait_is_watched_again(self):
        watchdog = AnswerWatchdog(0.3)
        ours, server = socket.socketpair()
        with ours, server:
            watchdog.end(watchdog.begin(ours.fileno(), socket_identity(ours.fileno())))
            assert watchdog.watching
            _wait_until_idle(watchdog)
            # Watched again: a wait begun after the thread ended still has its socket shut down.
            wait = watchdog.begin(ours.fileno(), socket_identity(ours.fileno()))
            assert watchdog.watching
            assert ours.recv(1) == b""
            watchdog.end(wait)
        assert wait.abandoned

    def test_its_thread_keeps_running_while_waits_keep_beginning(self):
        """Statements that each end between two ticks still keep it: it ends only when none began."""
        watchdog = AnswerWatchdog(5)
        ours, server = socket.socketpair()
        with ours, server:
            thread = None
            for _ in range(round(2 * IDLE_TICKS)):
                watchdog.end(watchdog.begin(ours.fileno(), socket_identity(ours.fileno())))
                thread = thread or watchdog._thread
                assert watchdog._thread is thread  # the same thread throughout, not one per wait
                time.sleep(TICK_SECONDS)
        _wait_until_idle(watchdog)

    def test_a_disposed_databases_watchdog_ends(self, _postgres_database):
        """Its thread ticked forever: every engine disposed of (a test's, a command's, a worker's consumer
        started over) left one behind, and a test process had hundreds by the end of a full run."""
        database = Database(_postgres_database, DatabaseLimits(statement_timeout=0.5))
        with database.engine.connect() as connection:
            connection.exec_driver_sql("SELECT 1")
            watchdog = connection.connection.dbapi_connection.watchdog
        assert watchdog.watching
        database.dispose()
        _wait_until_idle(watchdog)

    def test_a_descriptor_now_naming_another_socket_is_not_touched(self):
        ours, server = socket.socketpair()
        with ours, server:
            assert not _shut_down(Wait(0, ours.fileno(), socket_identity(server.fileno())))
            server.sendall(b"x")
            assert ours.recv(1) == b"x"


def _wait_until_idle(watchdog: AnswerWatchdog) -> None:
    """Its thread ends within its idle ticks (and a few for a loaded machine), not later."""
    deadline = time.monotonic() + (IDLE_TICKS + 10) * TICK_SECONDS
    while watchdog.watching and time.monotonic() < deadline:
        time.sleep(TICK_SECONDS / 4)
    assert not watchdog.watching


def no_answer() -> sa.exc.OperationalError:
    return sa.exc.OperationalError("SELECT 1", {}, OSError("server closed the connection unexpectedly"))


class ServerError(Exception):
    sqlstate = "57014"


class TestOutageHold:
    @pytest.fixture
    def clock(self):
        now = [100.0]
        return now

    @pytest.fixture
    def hold(self, clock):
        return OutageHold(1.0, clock=lambda: clock[0])

    def fail(self, hold, error):
        with pytest.raises(type(error)), hold.guard():
            raise error

    def test_after_no_answer_work_is_refused_until_the_hold_ends(self, hold, clock):
        self.fail(hold, no_answer())
        clock[0] += 0.9
        with pytest.raises(DatabaseUnavailable), hold.guard():
            pass
        clock[0] += 0.1
        with hold.guard():
            pass  # one try, which succeeds: the outage is over
        with hold.guard():
            pass

    def test_while_one_caller_tries_the_others_are_refused(self, hold, clock):
        self.fail(hold, no_answer())
        clock[0] += 1.0
        with hold.guard(), pytest.raises(DatabaseUnavailable), hold.guard():
            pass
        with hold.guard():
            pass

    def test_a_failed_try_holds_again(self, hold, clock):
        self.fail(hold, no_answer())
        clock[0] += 1.0
        self.fail(hold, no_answer())
        clock[0] += 0.5
        with pytest.raises(DatabaseUnavailable), hold.guard():
            pass

    def test_an_error_the_server_answered_holds_nothing(self, hold):
        self.fail(hold, sa.exc.OperationalError("SELECT pg_sleep(5)", {}, ServerError("canceling statement")))
        self.fail(hold, sa.exc.IntegrityError("INSERT", {}, OSError("duplicate key")))
        with hold.guard():
            pass
