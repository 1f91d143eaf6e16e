"""What a group commit's batch holds (engine.py, `GroupCommit`): on SQLite the leader takes its batch once
the writer turn is its own, so that webhooks arriving while another process holds the turn share the
leader's commit instead of each waiting for a turn of their own; units queued while the turn is refused
(an outage) are told so, not left waiting; and the GIL changes hands faster only during the turn."""

from __future__ import annotations

import sys
import threading
import time

import pytest
import sqlalchemy as sa

from webhook_service.database.engine import TURN_SWITCH_INTERVAL, Database
from webhook_service.database.outage import DatabaseUnavailable


@pytest.fixture
def sqlite_database(tmp_path):
    database = Database(f"sqlite:///{tmp_path / 'batches.db'}")
    with database.writing() as connection:
        connection.exec_driver_sql("CREATE TABLE probe (value INTEGER)")
    yield database
    database.dispose()


def _insert(value: int):
    def work(connection: sa.Connection) -> int:
        connection.exec_driver_sql(f"INSERT INTO probe VALUES ({value})")
        return value

    return work


def _wait_until(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def test_units_arriving_while_another_process_holds_the_turn_share_one_commit(sqlite_database, tmp_path):
    other_process = Database(sqlite_database.url)  # its own lock file descriptor: as another process's
    commits: list[int] = []
    sa.event.listen(sqlite_database.engine, "commit", lambda _connection: commits.append(1))
    results: list[int] = []
    threads = [
        threading.Thread(target=lambda value=value: results.append(sqlite_database.group_commit.run(_insert(value))))
        for value in range(4)
    ]
    try:
        with other_process.write_turn():
            threads[0].start()  # leads, and waits for the turn
            _wait_until(lambda: len(sqlite_database.group_commit._queue) == 1)
            for thread in threads[1:]:
                thread.start()
            _wait_until(lambda: len(sqlite_database.group_commit._queue) == 4)
        for thread in threads:
            thread.join(timeout=10)
    finally:
        other_process.dispose()
    assert sorted(results) == [0, 1, 2, 3]
    assert len(commits) == 1  # taken before the turn, the leader's batch held only itself: two commits
    with sqlite_database.reading() as session:
        assert sorted(session.connection().exec_driver_sql("SELECT value FROM probe").scalars()) == [0, 1, 2, 3]


def test_units_queued_while_the_turn_is_refused_are_all_told(sqlite_database):
    # A failure that says the database did not answer starts the outage hold: turns are refused at once.
    with pytest.raises(sa.exc.OperationalError), sqlite_database.outage.guard():
        raise sa.exc.OperationalError("SELECT 1", {}, Exception("unable to open database file"))
    errors: list[BaseException] = []

    def submit(value: int) -> None:
        try:
            sqlite_database.group_commit.run(_insert(value))
        except DatabaseUnavailable as error:
            errors.append(error)

    threads = [threading.Thread(target=submit, args=(value,)) for value in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert not any(thread.is_alive() for thread in threads), "a unit was left waiting"
    assert len(errors) == 3


def test_the_gil_changes_hands_faster_only_while_the_turn_is_held(sqlite_database):
    """Inside SQLite's writer turn the switch interval is TURN_SWITCH_INTERVAL; outside, what it was,
    also after a unit that failed."""
    before = sys.getswitchinterval()
    assert before != TURN_SWITCH_INTERVAL
    assert sqlite_database.group_commit.run(lambda _connection: sys.getswitchinterval()) == pytest.approx(
        TURN_SWITCH_INTERVAL
    )
    assert sys.getswitchinterval() == before

    def failing(_connection):
        raise ValueError("the unit's own failure")

    with pytest.raises(ValueError):
        sqlite_database.group_commit.run(failing)
    assert sys.getswitchinterval() == before
