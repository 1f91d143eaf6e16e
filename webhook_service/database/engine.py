"""Engines, sessions and group commit for SQLite (the embedded default) and PostgreSQL."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.orm import Session, sessionmaker

from webhook_service.database import json_text, postgres
from webhook_service.database.limits import DEFAULT_LIMITS, DatabaseLimits
from webhook_service.database.outage import UNAVAILABLE_ERRORS, DatabaseUnavailable, OutageHold
from webhook_service.database.postgres import postgres_engine
from webhook_service.database.prepared import PreparedStatement

logger = logging.getLogger("webhook_service.database")

T = TypeVar("T")

# Execution options. Read-only transactions take no write lock. Transactions whose loss in a crash is
# harmless (a lease that simply never happened) skip the flush to disk at commit; the next durable
# commit flushes them anyway.
READ_ONLY = "webhook_service_read_only"
NOT_DURABLE = "webhook_service_not_durable"


def make_engine(url: str, limits: DatabaseLimits = DEFAULT_LIMITS) -> sa.Engine:
    if url.startswith("sqlite"):
        return _sqlite_engine(url)
    engine = postgres_engine(url, limits)

    if url.startswith("postgresql"):
        event.listen(engine, "connect", _session_in_utc)

    @event.listens_for(engine, "begin")
    def _begin(connection):
        if connection.get_execution_options().get(NOT_DURABLE):
            # Only this transaction: the commit returns before its WAL record is flushed.
            connection.exec_driver_sql("SET LOCAL synchronous_commit TO OFF")

    return engine


def _session_in_utc(dbapi_connection, _record) -> None:
    """Times are written and compared in UTC (UTCDateTime); the session's time zone only decides how they
    come back. In a zone east or west of UTC, a time a provider may well send (a .NET DateTime.MinValue,
    0001-01-01T00:00:00Z) would come back in year 0 or 10000, which the driver cannot represent, and every
    read of that message would fail. Committed, so that no rollback by the pool undoes it."""
    with dbapi_connection.cursor() as cursor:
        cursor.execute("SET TIME ZONE 'UTC'")
    dbapi_connection.commit()


def database_file(url: str) -> Path | None:
    """The file an SQLite URL names; None for a server's database, or SQLite's in memory."""
    parsed = sa.engine.make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(str(parsed.database))


def _sqlite_engine(url: str) -> sa.Engine:
    file = database_file(url)
    if file is not None:
        file.parent.mkdir(parents=True, exist_ok=True)
    # isolation_level=None hands transaction control to us (pysqlite's own BEGIN is deferred and
    # would let two writers deadlock on the lock upgrade); we issue BEGIN IMMEDIATE below.
    engine = sa.create_engine(
        url,
        connect_args={"check_same_thread": False, "timeout": 30, "isolation_level": None},
        json_serializer=json_text.dumps,
        # An error's message (and so its log line: unhandled_exception's traceback) names the statement
        # but not its values, which hold endpoint URLs with their credentials and sealed secrets.
        hide_parameters=True,
    )

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection, _record):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        # FULL: a commit is on disk before we answer 2xx (durable, as the webhook contract promises).
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection):
        options = connection.get_execution_options()
        # Writers queue on the database lock at BEGIN, so a transaction never fails half-way on a
        # lock upgrade; readers (WAL) need no lock at all.
        if options.get(READ_ONLY):
            connection.exec_driver_sql("BEGIN")
            return
        # synchronous is a connection setting, so it is set before each write transaction that needs
        # the other value than the last one on this connection. NORMAL in WAL mode: the commit is not
        # flushed to disk (a crash of the machine, not of the process, can lose it).
        synchronous = "NORMAL" if options.get(NOT_DURABLE) else "FULL"
        if connection.info.get("synchronous", "FULL") != synchronous:
            connection.exec_driver_sql(f"PRAGMA synchronous={synchronous}")
            connection.info["synchronous"] = synchronous
        # On the driver's cursor (prepared.py): every write transaction, and every group commit, begins here.
        BEGIN_IMMEDIATE.run(connection, {})

    return engine


BEGIN_IMMEDIATE = PreparedStatement(sa.text("BEGIN IMMEDIATE"))


# The interpreter's switch interval while this process holds SQLite's writer turn. Every sqlite3 call in
# the turn lets go of the GIL, and a thread that took it meanwhile (a web thread busy with a request)
# keeps it until it waits for something or the interval runs out (5 ms by default), while every other
# process waits for the turn. With 0.1 ms, the turn's statements get the GIL back within that; outside
# the turn, threads switch as usual. bench/writer_turn.py shows the effect with busy threads.
TURN_SWITCH_INTERVAL = 0.0001


class SqliteWriteLock:
    """SQLite admits one writer at a time. Writers wait for their turn here rather than in SQLite's
    busy handler, which polls with sleeps of up to 100 ms and so turns contention into latency spikes
    of seconds; a kernel file lock (shared by all processes on the database) hands the turn over the
    moment the previous writer commits, and a thread lock orders the threads of one process."""

    def __init__(self, database_path: str):
        self._path = database_path + ".writelock"
        self._threads = threading.Lock()
        self._descriptor: int | None = None
        self._pid = 0

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        with self._threads:
            descriptor = self._open()
            fcntl.flock(descriptor, fcntl.LOCK_EX)
            # While the turn is ours, the GIL changes hands more often (see TURN_SWITCH_INTERVAL).
            interval = sys.getswitchinterval()
            sys.setswitchinterval(TURN_SWITCH_INTERVAL)
            try:
                yield
            finally:
                sys.setswitchinterval(interval)
                fcntl.flock(descriptor, fcntl.LOCK_UN)

    def _open(self) -> int:
        # A descriptor inherited across fork() would share its lock with the parent: reopen per process.
        if self._descriptor is None or self._pid != os.getpid():
            try:
                self._descriptor = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
            except OSError as error:
                # Beside the database file: whatever keeps this from opening keeps SQLite from it too.
                raise DatabaseUnavailable(f"cannot open {self._path}: {error.strerror}") from error
            self._pid = os.getpid()
        return self._descriptor


class DiscardUnit(Exception):
    """Raised by a group-commit unit to roll back its own work (and only it), returning `result`."""

    def __init__(self, result=None):
        super().__init__("unit discarded")
        self.result = result


class _Unit:
    __slots__ = ("error", "finished", "lead", "result", "wake", "work")

    def __init__(self, work: Callable[[sa.Connection], Any]):
        self.work = work
        # Released when the unit's thread is to look again: to lead, or (for a unit that did not lead its
        # batch) finished; at most once, as a unit that leads is finished by its own thread. A lock, not
        # an Event, whose condition took three more lock operations and a lock of its own per wait.
        self.wake = threading.Lock()
        self.wake.acquire()
        self.lead = False  # set to make this unit's thread commit the next batch
        self.finished = False  # set once the batch holding this unit has committed or failed
        self.result: Any = None
        self.error: BaseException | None = None


# How long the group commit keeps its connection between batches. Under load a batch follows the last
# within milliseconds; an idle connection goes back to the pool, whose check at checkout (PostgreSQL's
# pre-ping) then finds a server that went away meanwhile.
KEEP_CONNECTION_SECONDS = 1.0
# Connections a forked child found kept by its parent: still the parent's (on PostgreSQL, the same
# socket). Referenced here for good so that the child never closes or rolls them back.
_PARENTS_CONNECTIONS: list[sa.Connection] = []


class _KeptConnection:
    """The group commit's connection, kept from one batch to the next: taking one from the pool and
    giving it back (with the pool's reset, and on PostgreSQL a pre-ping round trip) cost more CPU than a
    small batch's own statements, and under a web server's load most batches hold one or two webhooks.
    Only the group commit's leader uses it, one batch at a time. A batch that fails gives it back to the
    pool (invalidated, if the failure says the connection is broken)."""

    def __init__(self, engine: sa.Engine):
        self._engine = engine
        self._connection: sa.Connection | None = None
        self._pid = os.getpid()
        self._released_at = 0.0
        self.was_reused = False  # whether the last use() had the connection of an earlier batch

    @contextlib.contextmanager
    def use(self) -> Iterator[sa.Connection]:
        connection = self._take()
        try:
            yield connection
        except BaseException:
            connection.close()
            raise
        self._connection, self._released_at = connection, time.monotonic()

    def _take(self) -> sa.Connection:
        kept, self._connection = self._connection, None
        if self._pid != os.getpid():  # forked: what was kept is the parent's
            if kept is not None:
                _PARENTS_CONNECTIONS.append(kept)
            kept, self._pid = None, os.getpid()
        if kept is not None and time.monotonic() - self._released_at < KEEP_CONNECTION_SECONDS:
            self.was_reused = True
            return kept
        if kept is not None:
            kept.close()
        self.was_reused = False
        return self._engine.connect()

    def close(self) -> None:
        kept, self._connection = self._connection, None
        if kept is not None and self._pid == os.getpid():
            kept.close()


class GroupCommit:
    """Many threads' small write transactions committed together.

    A durable commit costs an fsync and, on SQLite, a turn at the one writer lock; under load most of
    a webhook's time would go there. Threads submit their work as a function of a Connection; one of
    them (the leader) runs everything submitted so far in a single transaction, commits once and wakes
    the others. Arrivals meanwhile queue for the next batch, which the first of them leads. Nobody is
    told "stored" before the commit that stores them.

    A unit that fails or discards itself must roll back alone. The batch first runs without savepoints
    (two statements per unit, and on PostgreSQL two round trips, that almost every batch does not
    need); if a unit fails or discards itself, the whole transaction is rolled back and the batch runs
    again with each unit inside its own SAVEPOINT. So a unit's work may run twice: it must depend on
    nothing but the connection (keep no state from one run to the next).

    In that first run (and in a unit's own transaction, when it is alone), units may also put off
    inserts that could find their row there already (`inserts_checked_at_commit`): they go in with the
    other units' at the end, and one that finds a conflict raises `InsertConflict`, which sends the
    batch to its second run (the unit alone: to run again), where nothing is put off. On SQLite each statement in the writer turn hands the GIL to the process's
    other threads and waits to take it back, while every other process waits for the turn: a batch
    that runs a few statements instead of a few per unit holds the turn for much less.
    """

    def __init__(self, database: Database, max_batch: int = 64):
        self._database = database
        self._max_batch = max_batch
        self._mutex = threading.Lock()
        self._queue: list[_Unit] = []
        self._leading = False
        self._kept = _KeptConnection(database.engine)
        # Told the size of each batch that committed (the web's and worker's metrics; the database's
        # layer does not import them): how much the group commit shares, which throughput depends on.
        self.on_committed: Callable[[int], None] | None = None

    def run(self, work: Callable[[sa.Connection], Any]) -> Any:
        unit = _Unit(work)
        with self._mutex:
            self._queue.append(unit)
            if not self._leading:
                self._leading = unit.lead = True
        while True:
            if unit.lead:
                unit.lead = False
                self._commit_next_batch(unit)  # this unit heads the queue, so the batch includes it
            if unit.finished:
                break
            unit.wake.acquire()
        if unit.error is not None:
            raise unit.error
        return unit.result

    def _commit_next_batch(self, leader: _Unit) -> None:
        batch: list[_Unit] = []
        committed = False
        try:
            # One turn and one outage check for the batch, whatever runs below (a retry must not be
            # refused by the outage hold that its first try's broken connection would start).
            with self._database.write_turn():
                # Taken once the turn is ours: on SQLite the turn is often another process's, and what
                # arrives meanwhile goes in this batch instead of waiting for a turn of its own.
                batch = self._take_batch()
                self._commit_with_retries(batch)
                committed = True
        except BaseException as error:  # noqa: BLE001  # nothing in this batch was stored; every unit is told
            if not batch:  # the turn itself failed (an outage): the batch it would have run is told
                batch = self._take_batch()
            for unit in batch:
                unit.error = unit.error or error
        finally:
            with self._mutex:
                successor = self._queue[0] if self._queue else None
                if successor is None:
                    self._leading = False
            for unit in batch:
                unit.finished = True
                # Not the leader's own: its thread is here, and may have been told to lead without
                # waiting for that wake-up (already given, then), which may be given only once.
                if unit is not leader:
                    unit.wake.release()
            if successor is not None:
                successor.lead = True
                successor.wake.release()
        # After the wake-ups: nobody waits for it.
        if committed and self.on_committed is not None:
            self.on_committed(len(batch))

    def _commit_with_retries(self, batch: list[_Unit]) -> None:
        """Commit the batch, once more when what failed it stored nothing and says to try again:
        - the connection kept from an earlier batch was gone (the server restarted since): what the
          pool's check at checkout would have caught; once more, on a new one;
        - PostgreSQL chose the batch's transaction as a deadlock's victim (two processes' batches took
          the same rows' locks in different orders; the other went on) or found it could not serialize
          it: a few times more, as PostgreSQL advises. Not an outage: answered 503 or spooled, a
          provider's report would wait for minutes to be stored;
        - PostgreSQL ended the batch's session, idle too long once it held its place in the event feed
          (database/feed.py: this process stopped for seconds between a statement and the commit):
          rolled back, so once more, on a new connection."""
        victim_retries = MAX_VICTIM_RETRIES
        ended_retries = 1
        while True:
            try:
                self._commit(batch)
                return
            except sa.exc.DBAPIError as error:
                sqlstate = getattr(error.orig, "sqlstate", None)
                if sqlstate == IDLE_SESSION_ENDED and ended_retries > 0:
                    ended_retries -= 1
                    logger.warning("group_commit_retried", extra={"sqlstate": sqlstate, "units": len(batch)})
                elif error.connection_invalidated and self._kept.was_reused:
                    pass
                elif sqlstate in TRY_AGAIN_SQLSTATES and victim_retries > 0:
                    victim_retries -= 1
                    # As a JSON line: `extra` attributes are its keys (observability/logs.py).
                    logger.warning("group_commit_retried", extra={"sqlstate": sqlstate, "units": len(batch)})
                else:
                    raise
            for unit in batch:
                unit.result, unit.error = None, None

    def _take_batch(self) -> list[_Unit]:
        with self._mutex:
            batch, self._queue = self._queue[: self._max_batch], self._queue[self._max_batch :]
        return batch

    def close(self) -> None:
        """Give the kept connection back (the database is being disposed of)."""
        self._kept.close()

    def _commit(self, batch: list[_Unit]) -> None:
        if len(batch) == 1:
            self._commit_alone(batch[0])
        else:
            self._commit_together(batch)

    @contextlib.contextmanager
    def _writing(self) -> Iterator[sa.Connection]:
        """The kept connection in a transaction (the batch's writer turn is taken): `Database.writing()`
        without taking a connection from the pool and giving it back for each batch."""
        with self._kept.use() as connection, connection.begin():
            yield connection

    def _commit_alone(self, unit: _Unit) -> None:
        # The common case at low load: the unit's own transaction, no savepoint needed. Its inserts that
        # may conflict are put off as in a batch's first run; one that does conflict runs it again.
        with self._kept.use() as connection:
            for checked in (True, False):
                transaction = connection.begin()
                deferred = _defer_inserts(connection, checked=checked)
                try:
                    unit.result = unit.work(connection)
                    deferred.flush(connection)
                except InsertConflict:
                    transaction.rollback()
                    if not checked:
                        raise
                    continue
                except DiscardUnit as discarded:
                    unit.result = discarded.result
                    transaction.rollback()
                except BaseException:
                    transaction.rollback()
                    raise
                else:
                    transaction.commit()
                finally:
                    _stop_deferring(connection)
                return

    def _commit_together(self, batch: list[_Unit]) -> None:
        try:
            with self._writing() as connection:
                deferred = _defer_inserts(connection, checked=True)
                try:
                    results = [unit.work(connection) for unit in batch]
                    deferred.flush(connection)
                finally:
                    _stop_deferring(connection)
        except UNAVAILABLE_ERRORS:
            raise  # the connection itself failed: the whole batch fails
        except Exception:  # noqa: BLE001  # a unit failed or discarded itself: each on its own, below
            self._commit_each_in_its_savepoint(batch)
            return
        for unit, result in zip(batch, results, strict=True):
            unit.result = result

    def _commit_each_in_its_savepoint(self, batch: list[_Unit]) -> None:
        with self._writing() as connection:
            deferred = _defer_inserts(connection)
            try:
                for unit in batch:
                    self._commit_in_savepoint(connection, unit, deferred)
            finally:
                _stop_deferring(connection)

    @staticmethod
    def _commit_in_savepoint(connection: sa.Connection, unit: _Unit, deferred: _DeferredInserts) -> None:
        # The savepoint on the driver's cursor: SQLAlchemy's begin_nested() compiled a new statement
        # for each savepoint, which cost more than the unit's own inserts.
        SAVEPOINT.run(connection, {})
        try:
            unit.result = unit.work(connection)
            deferred.flush(connection)
        except DiscardUnit as discarded:
            unit.result = discarded.result
            deferred.discard()
            _roll_back_unit(connection)
        except UNAVAILABLE_ERRORS:
            raise  # the connection itself failed: the whole batch fails
        except Exception as error:  # noqa: BLE001  # this unit's own failure; the others go on
            unit.error = error
            deferred.discard()
            _roll_back_unit(connection)
        else:
            RELEASE_SAVEPOINT.run(connection, {})


# One unit at a time holds the savepoint, so one name serves them all.
SAVEPOINT = PreparedStatement(sa.text("SAVEPOINT group_commit_unit"))
RELEASE_SAVEPOINT = PreparedStatement(sa.text("RELEASE SAVEPOINT group_commit_unit"))
ROLLBACK_TO_SAVEPOINT = PreparedStatement(sa.text("ROLLBACK TO SAVEPOINT group_commit_unit"))


def _roll_back_unit(connection: sa.Connection) -> None:
    """Undo what the unit wrote, and only that (ROLLBACK TO keeps the savepoint: release it too). The
    transaction-scoped locks taken since the savepoint are released with it."""
    ROLLBACK_TO_SAVEPOINT.run(connection, {})
    RELEASE_SAVEPOINT.run(connection, {})
    connection.info.pop(_TRANSACTION_LOCKS, None)


# PostgreSQL's "deadlock detected" and "could not serialize access": the transaction was rolled back, and
# running it again may well succeed.
TRY_AGAIN_SQLSTATES = frozenset({"40P01", "40001"})
MAX_VICTIM_RETRIES = 3
# PostgreSQL's "terminating connection due to idle-in-transaction timeout".
IDLE_SESSION_ENDED = "25P03"


class InsertConflict(Exception):
    """An insert put off until the end of a batch's first run found its row there already: the batch
    runs again, nothing put off (see GroupCommit)."""


class _DeferredInserts:
    """Rows a group commit's units hand over to be inserted together just before the commit. `checked`:
    a batch's first run (or a unit's alone), where inserts that may conflict can be put off too."""

    def __init__(self, *, checked: bool = False) -> None:
        self.checked = checked
        self._pending: dict[str, _Pending] = {}

    def add(
        self,
        key: str,
        rows: list[Any],
        insert: Callable[[sa.Connection, list[Any]], object],
        order: int,
        standalone: bool,
    ) -> None:
        entry = self._pending.setdefault(key, _Pending(insert, [], order, standalone))
        entry.rows.extend(rows)

    def flush(self, connection: sa.Connection) -> None:
        pending, self._pending = self._pending, {}
        if len(pending) == 1:
            (only,) = pending.values()
            if only.standalone and postgres.nothing_sent_yet(connection):
                # The transaction's one statement: as a transaction of its own, two round trips fewer.
                with postgres.statements_on_their_own(connection):
                    only.insert(connection, only.rows)
                return
        for entry in sorted(pending.values(), key=lambda entry: entry.order):
            entry.insert(connection, entry.rows)

    def discard(self) -> None:
        self._pending = {}


@dataclass
class _Pending:
    insert: Callable[[sa.Connection, list[Any]], object]
    rows: list[Any]
    order: int
    standalone: bool


_DEFERRED_INSERTS = "webhook_service_deferred_inserts"


def _defer_inserts(connection: sa.Connection, *, checked: bool = False) -> _DeferredInserts:
    deferred = connection.info[_DEFERRED_INSERTS] = _DeferredInserts(checked=checked)
    return deferred


def _stop_deferring(connection: sa.Connection) -> None:
    # An invalidated connection (lost, or ended by the server, in its commit) took its `info` with it, and
    # reading that raises until the transaction is rolled back, which would hide the error that matters.
    if not connection.invalidated:
        connection.info.pop(_DEFERRED_INSERTS, None)


def insert_at_commit(
    connection: sa.Connection,
    key: str,
    rows: list[Any],
    insert: Callable[[sa.Connection, list[Any]], object],
    *,
    order: int = 0,
    standalone: bool = False,
) -> None:
    """Insert rows that nothing in the transaction reads back (the request log, the feed). In a group
    commit they wait for the end of the unit's work, or of the batch's, and go in with the rows other
    units gave under the same `key`, in one `insert(connection, rows)` (one executemany: one round trip
    on PostgreSQL), keys in `order` (lower first: rows others refer to before them, the feed's last,
    its lock then held the least). Outside a group commit, at once.

    `standalone`: `insert` is one statement that is atomic on its own (it fails whole, and then changes
    nothing). When it is all a PostgreSQL transaction runs, it runs as a transaction of its own, without
    BEGIN and COMMIT: a batch of webhooks of new messages is then one round trip instead of three."""
    deferred: _DeferredInserts | None = connection.info.get(_DEFERRED_INSERTS)
    if deferred is None:
        insert(connection, rows)
    else:
        deferred.add(key, rows, insert, order, standalone)


# The order of the feed's inserts put off to the end of a batch (`insert_at_commit`): after the others'.
ORDER_LAST = 1


def inserts_checked_at_commit(connection: sa.Connection) -> bool:
    """Whether inserts that may find their row there already can be put off to the end of the batch,
    where the insert function raises `InsertConflict` when one did (see GroupCommit)."""
    deferred: _DeferredInserts | None = connection.info.get(_DEFERRED_INSERTS)
    return deferred is not None and deferred.checked


# Per (transaction, column): the next id `claim_ids` hands out.
_ID_CLAIMS = "webhook_service_id_claims"
_MAX_IDS: dict[tuple[sa.Column, ...], PreparedStatement] = {}


def claim_ids(connection: sa.Connection, counts: dict[sa.Column, int]) -> dict[sa.Column, range]:
    """New values for integer primary keys (`count` of them per column), for rows inserted later in this
    transaction, or put off to its end. SQLite only: its writer holds the whole database, so the
    largest id there plus one is the id SQLite itself would give, and no other writer can take it
    meanwhile. Every insert into these columns in the transaction must take its ids here. One query per
    transaction for the columns first asked for together; ids a rolled-back savepoint did not use are
    not handed out again (a gap)."""
    if connection.dialect.name != "sqlite":
        raise ValueError("ids can be claimed on SQLite only")
    next_ids: dict[sa.Column, int] = _of_this_transaction(connection, _ID_CLAIMS, dict)
    unknown = tuple(column for column in counts if column not in next_ids)
    if unknown:
        query = _MAX_IDS.get(unknown)
        if query is None:
            maxima = [sa.select(sa.func.max(column)).scalar_subquery() for column in unknown]
            query = _MAX_IDS.setdefault(unknown, PreparedStatement(sa.select(*maxima)))
        found = query.run(connection, {})
        assert found is not None  # a select of aggregates returns one row
        for column, largest in zip(unknown, found, strict=True):
            next_ids[column] = (largest or 0) + 1
    claimed = {}
    for column, count in counts.items():
        start = next_ids[column]
        next_ids[column] = start + count
        claimed[column] = range(start, start + count)
    return claimed


# Transaction-scoped locks (PostgreSQL advisory locks) the connection's current transaction holds: taking
# one again would cost a round trip for nothing. Forgotten with a unit's savepoint (which releases those
# taken after it: maybe held still, then taken again, harmlessly).
_TRANSACTION_LOCKS = "webhook_service_transaction_locks"


def transaction_notes(connection: sa.Connection, name: str) -> set:
    """A set the connection keeps under `name` for its current transaction only (empty in the next)."""
    return _of_this_transaction(connection, name, set)


def transaction_lock_held(connection: sa.Connection, key: int) -> bool:
    return key in transaction_notes(connection, _TRANSACTION_LOCKS)


def note_transaction_lock(connection: sa.Connection, key: int) -> None:
    transaction_notes(connection, _TRANSACTION_LOCKS).add(key)


def _of_this_transaction(connection: sa.Connection, name: str, new: Callable[[], T]) -> T:
    """What the connection keeps under `name` for its current transaction only: made with `new` when that
    transaction has none yet (what an earlier transaction kept there is forgotten)."""
    held = connection.info.get(name)
    transaction = connection.get_transaction()
    if held is None or held[0] is not transaction:
        held = connection.info[name] = (transaction, new())
    return held[1]


class Database:
    """One engine, and separate session factories for writing and reading (on SQLite a reader must
    not take the write lock; on PostgreSQL the two are the same). Every unit of work goes through the
    outage hold: while the database is known not to answer, it fails at once."""

    def __init__(self, url: str, limits: DatabaseLimits = DEFAULT_LIMITS):
        self.url = url
        self.engine = make_engine(url, limits)
        self.outage = OutageHold()
        self.dialect = self.engine.dialect.name
        self._writer = sessionmaker(self.engine, expire_on_commit=False)
        self._reader = sessionmaker(self.engine.execution_options(**{READ_ONLY: True}), expire_on_commit=False)
        self._not_durable = self.engine.execution_options(**{NOT_DURABLE: True})
        database = self.engine.url.database
        self._write_lock = (
            SqliteWriteLock(database) if self.dialect == "sqlite" and database and database != ":memory:" else None
        )
        self.group_commit = GroupCommit(self)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Session]:
        """One unit of work that writes: commit on success, roll back on any error."""
        with self.outage.guard(), self._write_turn(), self._writer() as session, session.begin():
            yield session

    @contextlib.contextmanager
    def writing(self, *, durable: bool = True) -> Iterator[sa.Connection]:
        """Like transaction(), as a Core connection: for hot paths that need no ORM unit of work.
        `durable=False` for a transaction a crash may lose without harm: its commit does not wait for
        the disk, which under heavy writes elsewhere can take tens of milliseconds."""
        engine = self.engine if durable else self._not_durable
        with self.outage.guard(), self._write_turn(), engine.begin() as connection:
            yield connection

    @contextlib.contextmanager
    def write_turn(self) -> Iterator[None]:
        """This writer's turn (SQLite's one writer), through the outage hold: for a caller that brings
        its own connection."""
        with self.outage.guard(), self._write_turn():
            yield

    def _write_turn(self):
        return self._write_lock.hold() if self._write_lock else contextlib.nullcontext()

    @contextlib.contextmanager
    def reading(self) -> Iterator[Session]:
        with self.outage.guard(), self._reader() as session, session.begin():
            yield session

    def ping(self) -> None:
        with self.outage.guard(), self.engine.connect() as connection:
            connection.exec_driver_sql("SELECT 1")

    def dispose(self) -> None:
        self.group_commit.close()
        self.engine.dispose()
