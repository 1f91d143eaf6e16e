"""The event feed (GET /api/v1/events): what happened, in order, for consumers that remember a cursor.

Ordering guarantee: a reader that has seen event N never later discovers an event with an id below N.
Sequences alone do not give that on PostgreSQL (a transaction can take id 6 and commit before the one
holding id 5). So readers read no further than `head()`, below every id a transaction still running
may hold:

- a writer, before it takes its events' ids, takes a shared transaction-scoped advisory lock keyed by a
  lower bound of them: the events sequence's next value, read then (`BOUND_LOCK_SQL`). Shared locks do
  not wait for each other, so writers commit side by side and share the server's flushes;
- a reader reads the sequence's last value, then, in a statement of its own, the lowest bound still
  locked; `head()` is the lower of the two (the bound less one). It reads events in a statement after
  those, whose snapshot holds every writer whose lock it did not find: that writer had committed, or
  took its lock after the reader looked, and so its ids after the reader read the sequence.

A writer that stops between its bound and its commit (its process frozen, its network gone) would hold
every reader back: once it holds the bound, the server ends its session after it has sat idle for the
client's answer timeout (database/limits.py, `feed_writer_idle_timeout`), and its events are rolled back.

A writer of a version before 2026-12, left running by an upgrade, took the lock below instead of a
bound (`OLDER_WRITERS_KEY`): readers wait for it, and say so (`head()`).

Until 2026-12 ids were taken under one exclusive lock held to the commit, so every writer of a
deployment committed after the one before: with storage whose flushes take milliseconds, about one
commit per flush for the whole deployment, whatever its processes (docs/benchmarks.md, "fourteenth").
SQLite admits one writer at a time: its head is the last id.
"""

from __future__ import annotations

import logging
import time

import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Session

from webhook_service.database.engine import ORDER_LAST, insert_at_commit, note_transaction_lock, transaction_lock_held

# The types, for the modules that name them as feed.TYPES, feed.MESSAGE_RECEIVED...
from webhook_service.database.event_types import (  # noqa: F401
    ATTACHMENT_FAILED,
    ATTACHMENT_REJECTED,
    ATTACHMENT_STORED,
    ENDPOINT_DISABLED,
    MESSAGE_RECEIVED,
    MESSAGE_STATUS,
    TYPES,
)
from webhook_service.database.limits import FEED_WRITER_IDLE_OPTION
from webhook_service.database.outage import DatabaseUnavailable
from webhook_service.database.prepared import BoundRow, PreparedStatement
from webhook_service.database.tables import EVENTS

logger = logging.getLogger("webhook_service.database")

INSERT_EVENTS = PreparedStatement(sa.insert(EVENTS))

# The writers' bounds, among PostgreSQL's two-key advisory locks (rate limits have a space of their own):
# the first key BOUND_SPACE plus the bound's bits above 31, the second its low 31 bits, so that ids up
# to 2^47 have keys (a sequence of cache 1: its last value is the last id handed out).
BOUND_SPACE = 0x5EED_0000
_BOUND_SPACE_END = BOUND_SPACE + 0xFFFF
_SEQUENCE = "events_id_seq"
# Its parameters are `bound_parameters()`: `:feed_bound_space` is BOUND_SPACE (a parameter: psycopg sends a
# statement without any by the simple query protocol, which it cannot prepare); `:feed_writer_idle`, the
# milliseconds the transaction may then sit idle before the server ends its session (for this transaction
# only; NULL keeps the server's setting).
BOUND_LOCK_SQL = (
    "SELECT pg_advisory_xact_lock_shared(CAST(:feed_bound_space + (next_id >> 31) AS integer), "
    "CAST(next_id & 2147483647 AS integer)) AS taken, "
    "set_config('idle_in_transaction_session_timeout', COALESCE(CAST(:feed_writer_idle AS text), "
    "current_setting('idle_in_transaction_session_timeout')), true) AS writer_idle "
    f"FROM (SELECT last_value + CAST(is_called AS integer) AS next_id FROM {_SEQUENCE}) AS sequence"
)
TAKE_BOUND = PreparedStatement(sa.text(BOUND_LOCK_SQL))
# What `transaction_lock_held` notes once a transaction has taken its bound (one is enough: its later
# ids are above it).
FEED_LOCK_KEY = BOUND_SPACE

_LAST_ID = sa.text(f"SELECT last_value - 1 + CAST(is_called AS integer) FROM {_SEQUENCE}")
# The lock every feed writer of the versions before 2026-12 took, exclusively, before its event ids and
# held to its commit (one bigint key, so objsubid 1). Such a writer takes no bound: while one holds it, its
# ids may be below the sequence's last value, uncommitted.
OLDER_WRITERS_KEY = 0x5EED_F00D
# The lowest bound held, and how many writers of an older version hold their lock.
_LOWEST_BOUND = sa.text(
    f"SELECT min(((CAST(classid AS bigint) - {BOUND_SPACE}) << 31) | CAST(objid AS bigint)) "
    "FILTER (WHERE objsubid = 2), "
    "count(*) FILTER (WHERE objsubid = 1 AND granted) "
    "FROM pg_locks WHERE locktype = 'advisory' "
    f"AND ((objsubid = 2 AND CAST(classid AS bigint) BETWEEN {BOUND_SPACE} AND {_BOUND_SPACE_END}) "
    f"OR (objsubid = 1 AND classid = 0 AND CAST(objid AS bigint) = {OLDER_WRITERS_KEY})) "
    # advisory locks are the database's own, but pg_locks shows every database's
    "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
)
# How often, and after what pause, head() looks again while an older version's writer holds its lock
# (they hold it for milliseconds); then it gives up with FeedUnsettled.
OLDER_WRITER_LOOKS = 20
OLDER_WRITER_PAUSE_SECONDS = 0.005
# At most one log line per process in this long about older versions' writers.
OLDER_WRITER_WARNING_SECONDS = 60.0
# The last event's id (0 for none), of the whole feed and of one tenant's.
_LAST_EVENT = sa.select(sa.func.coalesce(sa.func.max(EVENTS.c.id), 0))
_TENANT_LAST_EVENT = _LAST_EVENT.where(EVENTS.c.tenant_id == sa.bindparam("tenant_id"))


def bound_event(dialect: Dialect, row: dict) -> BoundRow:
    """An event (a dict of FeedEvent columns) converted ahead of the transaction that appends it."""
    return INSERT_EVENTS.bind(dialect, row)


def append(connection: sa.Connection, rows: list[dict | BoundRow]) -> None:
    """Add events (dicts of FeedEvent columns, or `bound_event`s) at the end of the feed. In a group commit, after
    everything else the batch writes, just before its commit, so that the lock is held as briefly as
    possible; elsewhere, at once (call it last in the transaction)."""
    if rows:
        insert_at_commit(connection, "feed", rows, _insert, order=ORDER_LAST)


def bound_parameters(connection: sa.Connection) -> dict:
    """The parameters of BOUND_LOCK_SQL, wherever it runs, on `connection`."""
    idle = connection.get_execution_options().get(FEED_WRITER_IDLE_OPTION)
    return {"feed_bound_space": BOUND_SPACE, "feed_writer_idle": None if idle is None else str(idle)}


def _insert(connection: sa.Connection, rows: list[dict | BoundRow]) -> None:
    if connection.dialect.name != "postgresql":
        INSERT_EVENTS.run_many(connection, rows)
        return
    if not transaction_lock_held(connection, FEED_LOCK_KEY):
        TAKE_BOUND.run(connection, bound_parameters(connection))
        note_transaction_lock(connection, FEED_LOCK_KEY)
    # A statement per event (almost always one), not psycopg's pipeline of them (executemany): the pipeline
    # ends with a flush request, after which the server waits for the commit without the idle limit the
    # bound set.
    for row in rows:
        INSERT_EVENTS.run(connection, row)


class FeedUnsettled(DatabaseUnavailable):
    """The feed cannot be read in order now: a process of an older version keeps writing to it. An outage
    to the feed's readers (the events API answers 503), not to the database's other users."""


def head(reader: sa.Connection | Session) -> int:
    """The id up to which the feed is settled (0 for none): no event at or below it can appear after
    this returns. Read the events in a statement after it (on PostgreSQL each statement sees what had
    committed when it began).

    On PostgreSQL, a writer of a version before 2026-12 (during an upgrade that left old processes
    running) takes no bound; while it holds its own lock, the head is not known. It holds it for
    milliseconds: look again a few times, then raise FeedUnsettled. Either way, log that it is there."""
    dialect = reader.get_bind().dialect if isinstance(reader, Session) else reader.dialect
    if dialect.name != "postgresql":
        return reader.scalar(_LAST_EVENT) or 0
    for _ in range(OLDER_WRITER_LOOKS):
        last = reader.scalar(_LAST_ID) or 0
        # After the sequence (see the module's docstring). An older version's writer whose lock is not
        # found committed before, or takes its ids after the sequence was read, as a bound's holder.
        lowest, older_writers = reader.execute(_LOWEST_BOUND).one()
        if not older_writers:
            return last if lowest is None else min(last, lowest - 1)
        _warn_of_older_writers()
        time.sleep(OLDER_WRITER_PAUSE_SECONDS)
    raise FeedUnsettled(
        "a process of a version before 2026-12 is writing to the event feed: stop every such process (CHANGELOG)"
    )


_warned_at: float | None = None


def _warn_of_older_writers() -> None:
    global _warned_at
    now = time.monotonic()
    if _warned_at is None or now - _warned_at >= OLDER_WRITER_WARNING_SECONDS:
        _warned_at = now
        # As a JSON line: `extra` attributes are its keys (observability/logs.py).
        logger.error(
            "feed_written_by_older_version",
            extra={"detail": "a process of a version before 2026-12 is running: stop it (CHANGELOG, Upgrading)"},
        )


def tenant_head(reader: sa.Connection | Session, tenant_id: str, after: int = 0) -> int:
    """`head()`, no further than the tenant's last event. When that event is at or below `after` (a
    consumer's cursor: nothing new for the tenant), it is returned without `head()`'s reads, which on
    PostgreSQL read the server's lock table; most polls of a consumer that polls often find nothing new.
    (Read first, the tenant's last event is at or below the head read after it: the lower of the two is
    a head.)"""
    last = reader.scalar(_TENANT_LAST_EVENT, {"tenant_id": tenant_id}) or 0
    if last <= after:
        return last
    return min(head(reader), last)
