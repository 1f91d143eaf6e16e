"""What a group commit's batch holds (engine.py, `GroupCommit`): on SQLite the leader takes its batch once
the writer turn is its own, so that webhooks arriving while another process holds the turn share the
leader's commit instead of each waiting for a turn of their own; units queued while the turn is refused
(an outage) are told so, not left waiting; and the GIL changes hands faster only during the turn."""

from __future__ import annotations

import functools
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
    sizes: list[int] = []
    sqlite_database.group_commit.on_committed = sizes.append
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
    assert sizes == [4]  # what the metrics are told (runtime.py)
    with sqlite_database.reading() as session:
        assert sorted(session.connection().exec_driver_sql("SELECT value FROM probe").scalars()) == [0, 1, 2, 3]


def test_units_queued_while_the_turn_is_refused_are_all_told(sqlite_database):
    # A failure that says the database did not answer starts the outage hold: turns are refused at once.
    with pytest.raises(sa.exc.OperationalError), sqlite_database.outage.guard():
        raise sa.exc.OperationalError("SELECT 1", {}, Exception("unable to open database file"))
    errors: list[BaseException] = []
    sizes: list[int] = []
    sqlite_database.group_commit.on_committed = sizes.append

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
    assert sizes == []  # no batch committed, none counted


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


def _pause_then(value: int, _connection: sa.Connection) -> int:
    time.sleep(0.0001)  # lets go of the GIL, as a statement does: the others queue meanwhile
    return value


def test_many_threads_in_many_batches_each_get_their_own_answer(sqlite_database):
    """Leadership passes from batch to batch while threads keep arriving: every unit's thread is woken
    once its batch is done, with its own result, whether it was already waiting, about to wait, or about
    to lead (a successor told to lead before it began to wait must not be woken a second time)."""
    threads, per_thread = 12, 150
    results: dict[int, list[int]] = {n: [] for n in range(threads)}
    failures: list[BaseException] = []

    def submit(n: int) -> None:
        try:
            for index in range(per_thread):
                value = n * per_thread + index
                results[n].append(sqlite_database.group_commit.run(functools.partial(_pause_then, value)))
        except BaseException as error:  # noqa: BLE001  # reported below
            failures.append(error)

    workers = [threading.Thread(target=submit, args=(n,)) for n in range(threads)]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # threads switch between almost any two steps: every interleaving comes up
    try:
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(timeout=60)
    finally:
        sys.setswitchinterval(interval)
    assert not any(worker.is_alive() for worker in workers), "a unit's thread was never woken"
    assert failures == []
    assert results == {n: list(range(n * per_thread, (n + 1) * per_thread)) for n in range(threads)}


class _SlowToWait:
    """The group commit's mutex, except that the thread `slowed` stays away for `seconds` after leaving
    it in `run` (having queued its unit): what a thread preempted at that point does."""

    def __init__(self, slowed: list[threading.Thread], seconds: float):
        self._lock = threading.Lock()
        self._slowed, self._seconds = slowed, seconds

    def __enter__(self) -> None:
        self._lock.acquire()

    def __exit__(self, *_exc) -> None:
        self._lock.release()
        if threading.current_thread() in self._slowed and sys._getframe(1).f_code.co_name == "run":
            time.sleep(self._seconds)


def test_a_successor_told_to_lead_before_it_waits_leads_once(sqlite_database):
    """The leader hands the next batch to the first unit queued after its own batch; that unit's thread
    may not have begun to wait yet. It leads all the same, and is not woken a second time (the wake-up
    it never waited for must not be given again when its own batch is done)."""
    group_commit = sqlite_database.group_commit
    slowed: list[threading.Thread] = []
    group_commit._mutex = _SlowToWait(slowed, 0.3)
    answers: dict[str, object] = {}

    def lead() -> None:
        answers["first"] = group_commit.run(lambda _connection: (time.sleep(0.1), "first")[1])

    def follow() -> None:
        try:
            answers["second"] = group_commit.run(lambda _connection: "second")
        except BaseException as error:  # noqa: BLE001  # reported below
            answers["second"] = error

    leader, successor = threading.Thread(target=lead), threading.Thread(target=follow)
    slowed.append(successor)
    leader.start()
    _wait_until(lambda: group_commit._leading)
    successor.start()  # queues while the first batch runs, then stays away until it is over
    leader.join(timeout=10)
    successor.join(timeout=10)
    assert not successor.is_alive() and not leader.is_alive()
    assert answers == {"first": "first", "second": "second"}
    # And the group commit goes on: a unit after them is stored and answered.
    group_commit._mutex = threading.Lock()
    assert group_commit.run(_insert(7)) == 7
