"""Failing at once while the database is known not to answer.

Bounded waits (database/limits.py) still cost each request seconds. While the database does not answer,
every web thread would spend them in turn: a flood of provider retries keeps all of them waiting, and
requests that need no database at all, /healthz among them, queue behind. So once a request has found the
database not answering, database work fails at once (DatabaseUnavailable, a 503) for OUTAGE_HOLD_SECONDS;
then one request tries the database again while the others keep failing at once, and its outcome either
ends the outage or holds it for another period.

Only failures where the server did not answer count: it could not be reached, the connection broke, or
the answer watchdog gave up. A server that answers with an error (a statement cancelled by
statement_timeout, a constraint) is there: nothing is held.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator

import sqlalchemy as sa

# Short: it only spares threads the wait, and a recovered database is used again this soon.
OUTAGE_HOLD_SECONDS = 1.0


class DatabaseUnavailable(Exception):
    """The database is not there: it did not answer moments ago (this work was not tried), or a file it
    needs could not be opened (SQLite's write lock, when the database's directory is gone or no longer
    writable)."""


# Errors that mean "the database is not there right now", answered 503 so providers retry.
UNAVAILABLE_ERRORS = (sa.exc.OperationalError, sa.exc.InterfaceError, sa.exc.TimeoutError, DatabaseUnavailable)


def no_answer(error: BaseException) -> bool:
    """Whether `error` says the database did not answer: an operational or interface error without the
    SQLSTATE that every error the PostgreSQL server sends carries (SQLite's have none: a locked or
    unreadable database file counts too)."""
    if not isinstance(error, sa.exc.OperationalError | sa.exc.InterfaceError):
        return False
    return getattr(error.orig, "sqlstate", None) is None


def driver_error(error: BaseException) -> BaseException:
    """The driver's own error inside SQLAlchemy's wrapper (which adds the statement and a link), else
    `error` itself."""
    return error.orig if isinstance(error, sa.exc.DBAPIError) and error.orig is not None else error


def first_line(error: BaseException) -> str:
    """The first line of what `error` says (psycopg's go on with hints; SQLAlchemy's with the statement)."""
    lines = str(error).strip().splitlines()
    return lines[0] if lines else "no detail"


def shown_url(url: str) -> str:
    """A database URL as an operator may see it (a command's output, a log line): its password "***"."""
    return sa.engine.make_url(url).render_as_string()  # hide_password defaults to True


def described(error: BaseException, url: str) -> str:
    """One of UNAVAILABLE_ERRORS in a line for an operator: the database (its password hidden) and the
    driver's reason. Connecting failed (or a commit, which also finds a lost connection) when the error
    came with no statement; otherwise the database answered a statement with an error of its own
    (SQLite's `database is locked`, a statement cancelled by statement_timeout)."""
    where = shown_url(url)
    reason = first_line(driver_error(error))
    if isinstance(error, sa.exc.DBAPIError) and error.statement is not None:
        return f"the database failed a statement ({where}): {reason}"
    return f"the database could not be reached ({where}): {reason}"


class OutageHold:
    def __init__(self, seconds: float = OUTAGE_HOLD_SECONDS, *, clock: Callable[[], float] = time.monotonic):
        self._seconds = seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._until: float | None = None  # None: no outage known
        self._trying = False  # during an outage, one caller is trying the database

    @contextlib.contextmanager
    def guard(self) -> Iterator[None]:
        """Around one unit of database work: refused at once during the hold, and its outcome noted."""
        self._admit()
        try:
            yield
        except DatabaseUnavailable:
            raise  # refused by a guard inside this one: says nothing new
        except BaseException as error:
            self._ended(failed=no_answer(error))
            raise
        else:
            self._ended(failed=False)

    def _admit(self) -> None:
        if self._until is None:  # the usual case, without taking the lock
            return
        with self._lock:
            if self._until is None:
                return
            if self._trying or self._clock() < self._until:
                raise DatabaseUnavailable("the database did not answer moments ago")
            self._trying = True

    def _ended(self, *, failed: bool) -> None:
        if self._until is None and not failed:
            return
        with self._lock:
            self._trying = False
            self._until = self._clock() + self._seconds if failed else None
