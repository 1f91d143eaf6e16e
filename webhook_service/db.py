"""Engines, sessions and migrations for SQLite (embedded default) and PostgreSQL."""
from __future__ import annotations

import contextlib
import fcntl
import os
import threading
from pathlib import Path
from typing import Iterator

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS_DIR = Path(__file__).parent / "migrations"

# Errors that mean "the database is not there right now", answered 503 so providers retry.
READ_ONLY = "webhook_service_read_only"
UNAVAILABLE_ERRORS = (sa.exc.OperationalError, sa.exc.InterfaceError, sa.exc.TimeoutError)


def make_engine(url: str) -> sa.Engine:
    if url.startswith("sqlite"):
        return _sqlite_engine(url)
    return sa.create_engine(
        url,
        pool_pre_ping=True,
        pool_size=5,
        max_overflow=10,
        pool_timeout=5,
        # Fail fast when the server is down instead of hanging the provider's request.
        connect_args={"connect_timeout": 3} if url.startswith("postgresql") else {},
    )


def _sqlite_engine(url: str) -> sa.Engine:
    database = sa.engine.make_url(url).database
    if database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    # isolation_level=None hands transaction control to us (pysqlite's own BEGIN is deferred and
    # would let two writers deadlock on the lock upgrade); we issue BEGIN IMMEDIATE below.
    engine = sa.create_engine(url, connect_args={"check_same_thread": False, "timeout": 30,
                                                 "isolation_level": None})

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
        # Writers queue on the database lock at BEGIN, so a transaction never fails half-way on a
        # lock upgrade; readers (WAL) need no lock at all.
        if connection.get_execution_options().get(READ_ONLY):
            connection.exec_driver_sql("BEGIN")
        else:
            connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


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
            try:
                yield
            finally:
                fcntl.flock(descriptor, fcntl.LOCK_UN)

    def _open(self) -> int:
        # A descriptor inherited across fork() would share its lock with the parent: reopen per process.
        if self._descriptor is None or self._pid != os.getpid():
            self._descriptor = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
            self._pid = os.getpid()
        return self._descriptor


class Database:
    """One engine, and separate session factories for writing and reading (on SQLite a reader must
    not take the write lock; on PostgreSQL the two are the same)."""

    def __init__(self, url: str):
        self.url = url
        self.engine = make_engine(url)
        self.dialect = self.engine.dialect.name
        self._writer = sessionmaker(self.engine, expire_on_commit=False)
        self._reader = sessionmaker(self.engine.execution_options(**{READ_ONLY: True}),
                                    expire_on_commit=False)
        database = self.engine.url.database
        self._write_lock = SqliteWriteLock(database) if self.dialect == "sqlite" and database \
            and database != ":memory:" else None

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Session]:
        """One unit of work that writes: commit on success, roll back on any error."""
        with self._write_turn(), self._writer() as session, session.begin():
            yield session

    @contextlib.contextmanager
    def writing(self) -> Iterator[sa.Connection]:
        """Like transaction(), as a Core connection: for hot paths that need no ORM unit of work."""
        with self._write_turn(), self.engine.begin() as connection:
            yield connection

    def _write_turn(self):
        return self._write_lock.hold() if self._write_lock else contextlib.nullcontext()

    @contextlib.contextmanager
    def reading(self) -> Iterator[Session]:
        with self._reader() as session, session.begin():
            yield session

    def ping(self) -> None:
        with self.engine.connect() as connection:
            connection.exec_driver_sql("SELECT 1")

    def dispose(self) -> None:
        self.engine.dispose()


def alembic_config(url: str):
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def migrate(url: str) -> None:
    """Bring the schema up to date (idempotent; the run command calls it before starting)."""
    from alembic import command

    command.upgrade(alembic_config(url), "head")
