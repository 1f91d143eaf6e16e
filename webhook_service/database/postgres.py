"""PostgreSQL engines whose every wait is bounded (the limits and their reasons: database/limits.py).

- Connecting: libpq's connect_timeout.
- A server that is gone (host down, network dropping packets): TCP keepalives find a dead idle
  connection in the pool within about 13 s, and tcp_user_timeout drops a connection whose sent data
  stays unacknowledged longer than answer_timeout.
- A server that is alive but slow, or a statement waiting for a lock: statement_timeout, set at connect,
  so the server cancels the statement and the connection stays usable.
- A server that is there but does not answer (stopped, stalled): none of the above fires (its kernel
  acknowledges everything), so every request to the server goes through the answer watchdog, which
  abandons the connection after answer_timeout.
- Waiting for a pooled connection: the pool's timeout.
And the other way round: a transaction that holds its place in the event feed and then stops talking
(its process frozen, its network gone) is ended by the server after answer_timeout idle (database/feed.py),
so that it holds the feed's readers back no longer than that.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any, TypeVar, cast

import psycopg
import sqlalchemy as sa
from sqlalchemy import event

from webhook_service.database import json_text
from webhook_service.database.answer_watchdog import AnswerWatchdog, socket_identity
from webhook_service.database.limits import FEED_WRITER_IDLE_OPTION, DatabaseLimits

T = TypeVar("T")

# An idle connection is probed after this many seconds, then every KEEPALIVE_INTERVAL; with
# tcp_user_timeout set, the kernel drops it once a probe stays unanswered for that long. Short enough
# that a pool rarely hands out a connection to a server that vanished, long enough to cost nothing.
KEEPALIVE_IDLE_SECONDS = 10
KEEPALIVE_INTERVAL_SECONDS = 2
KEEPALIVE_COUNT = 3


class NoAnswer(psycopg.OperationalError):
    """The server did not answer within answer_timeout; the connection was abandoned."""


class BoundedConnection(psycopg.Connection):
    """A psycopg connection whose requests to the server (through its cursors, commit and rollback) are
    watched by an AnswerWatchdog."""

    watchdog: AnswerWatchdog
    descriptor: int  # the socket's, which stays the same for the connection's life
    inode: int

    def commit(self) -> None:
        _answered(self, super().commit)

    def rollback(self) -> None:
        _answered(self, super().rollback)


class BoundedCursor(psycopg.Cursor):
    """The cursor of a BoundedConnection: execute and executemany are what SQLAlchemy uses (and its
    pre-ping), and results are fetched with them (client-side cursors)."""

    def execute(self, *args: Any, **kwargs: Any) -> Any:
        return _answered(
            cast(BoundedConnection, self.connection), lambda: super(BoundedCursor, self).execute(*args, **kwargs)
        )

    def executemany(self, *args: Any, **kwargs: Any) -> None:
        _answered(
            cast(BoundedConnection, self.connection), lambda: super(BoundedCursor, self).executemany(*args, **kwargs)
        )


def _answered(connection: BoundedConnection, request: Callable[[], T]) -> T:
    watchdog = connection.watchdog
    wait = watchdog.begin(connection.descriptor, connection.inode)
    try:
        return request()
    except psycopg.OperationalError as error:
        if wait.abandoned:
            raise NoAnswer(f"the database server did not answer within {watchdog.seconds:g} s") from error
        raise
    finally:
        watchdog.end(wait)


# psycopg prepares a statement once it has run this many times, or when a call asks (`prepare=True`).
PREPARED_ONLY_WHEN_ASKED = 2**31 - 1


def postgres_engine(url: str, limits: DatabaseLimits) -> sa.Engine:
    connect_args: dict[str, Any] = {
        "connect_timeout": limits.connect_timeout,
        "keepalives": 1,
        "keepalives_idle": KEEPALIVE_IDLE_SECONDS,
        "keepalives_interval": KEEPALIVE_INTERVAL_SECONDS,
        "keepalives_count": KEEPALIVE_COUNT,
        # No statement is prepared unless it asks (`PreparedStatement(kept_prepared=True)`: the group
        # commit's batch statements, prepared anew every few seconds). psycopg prepared every statement
        # from its fifth run, and PostgreSQL then kept a generic plan, made for the tables as they were
        # at that moment and kept until autovacuum next analyzed them: made on a new deployment's small
        # tables, the status reports' lookups of their messages by key read the tenant's every message
        # (or scanned the table) as it grew, 600,000 rows for 20 reports among 30,000 messages
        # (tests/intake/test_postgres_reports.py). Planned at every run, a statement is planned for the
        # tables as they are. (Not None: that disables prepared statements altogether, `prepare=True`
        # included.)
        "prepare_threshold": PREPARED_ONLY_WHEN_ASKED,
    }
    answer_timeout = limits.answer_timeout
    if limits.statement_timeout is not None and answer_timeout is not None:
        connect_args["tcp_user_timeout"] = round(answer_timeout * 1000)
        # After any options the URL sets (which connect_args would replace): the setting wins.
        given = sa.engine.make_url(url).query.get("options", ())
        options = [given] if isinstance(given, str) else list(given)
        connect_args["options"] = " ".join([*options, f"-c statement_timeout={round(limits.statement_timeout * 1000)}"])
    idle = limits.feed_writer_idle_timeout
    engine = sa.create_engine(
        url,
        execution_options={FEED_WRITER_IDLE_OPTION: round(idle * 1000)} if idle is not None else {},
        pool_pre_ping=True,
        pool_size=5,
        max_overflow=10,
        pool_timeout=limits.pool_timeout,
        connect_args=connect_args,
        json_serializer=json_text.dumps,
        # An error's message (and so its log line: unhandled_exception's traceback) names the statement
        # but not its values, which hold endpoint URLs with their credentials and sealed secrets.
        hide_parameters=True,
    )
    if answer_timeout is not None and engine.dialect.driver == "psycopg":
        watchdog = AnswerWatchdog(answer_timeout)

        @event.listens_for(engine, "do_connect")
        def _connect(_dialect, _record, cargs, cparams):
            connection = BoundedConnection.connect(*cargs, **cparams)
            connection.watchdog = watchdog
            connection.descriptor = connection.fileno()
            connection.inode = socket_identity(connection.descriptor)
            connection.cursor_factory = BoundedCursor
            return connection

    return engine


def nothing_sent_yet(connection: sa.Connection) -> bool:
    """Whether the connection's transaction has sent the server nothing so far: psycopg sends BEGIN with
    a transaction's first statement, so until then the server's side of it is idle."""
    dbapi_connection = connection.connection.dbapi_connection
    return (
        isinstance(dbapi_connection, psycopg.Connection)
        and dbapi_connection.pgconn.transaction_status == psycopg.pq.TransactionStatus.IDLE
    )


@contextlib.contextmanager
def statements_on_their_own(connection: sa.Connection) -> Iterator[None]:
    """Each statement run inside is a transaction of its own (autocommit), without the BEGIN and COMMIT
    round trips; for a transaction that has sent nothing yet (`nothing_sent_yet`) and will run one
    statement, atomic by itself. The commit that follows then has nothing to do.

    A connection that cannot be set back is invalidated: in the pool it would commit each statement of
    every later transaction on its own."""
    dbapi_connection = cast(psycopg.Connection, connection.connection.dbapi_connection)
    dbapi_connection.autocommit = True
    try:
        yield
    finally:
        try:
            if not dbapi_connection.closed:
                dbapi_connection.autocommit = False
        except psycopg.Error:
            connection.invalidate()
