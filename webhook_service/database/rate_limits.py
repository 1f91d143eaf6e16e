"""The console's rate limits (sign-in attempts, actions) counted in the service's own database, when no
Redis counts them: every web process and host of the deployment shares the count.

It is a storage of the `limits` library, so the console's limiters (console/access.py) keep the
library's MovingWindowRateLimiter whatever counts their hits (the fixed window's operations are there
too, over the same rows: a fixed window's hits all end when it does). A hit is a row of
`rate_limit_hits` (a hash of the key, the end of the hit's window), and counting one is one short
transaction that does not wait for the disk (a machine crash may forget a hit: one more attempt
allowed, once):

1. on PostgreSQL, a transaction-scoped advisory lock on the key, so that processes counting the same key
   go one after the other and none counts before another's hit is committed (SQLite admits one writer at
   a time anyway);
2. the key's hits whose window has not ended are counted; past the limit, nothing is added;
3. otherwise the hit is added, its window ending `expiry` seconds from now;
4. up to SWEEP_BATCH hits of any key whose window has ended are deleted: a hit adds one row and removes
   up to a hundred that no longer count, so the table holds little more than the hits that still do,
   and no job has to prune it.

Times are the database's (clock.py), so hosts whose clocks disagree still share one window.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator
from datetime import datetime, timedelta

import sqlalchemy as sa
from limits.storage import MovingWindowSupport, Storage

from webhook_service.database.clock import database_now
from webhook_service.database.engine import Database
from webhook_service.database.outage import UNAVAILABLE_ERRORS
from webhook_service.database.tables import RATE_LIMIT_HITS

SWEEP_BATCH = 100
# An arbitrary constant that names "rate limit keys" among PostgreSQL's two-key advisory locks (a key
# space apart from the one-key locks, such as the feed's).
_LOCK_SPACE = 0x524C_4854
_LOCK_KEY = sa.text("SELECT pg_advisory_xact_lock(:space, :key)")

_HITS = RATE_LIMIT_HITS


class DatabaseStorage(Storage, MovingWindowSupport):
    """Rate-limit hits in the database. Errors that mean the database is not there are the storage's
    errors (`limits.errors.StorageError` with `wrap_exceptions`), so the caller can count elsewhere
    meanwhile."""

    STORAGE_SCHEME = None  # made with the service's Database, not from a URL

    def __init__(self, db: Database, *, wrap_exceptions: bool = False):
        super().__init__(wrap_exceptions=wrap_exceptions)
        self._db = db

    @property
    def base_exceptions(self) -> type[Exception] | tuple[type[Exception], ...]:
        return UNAVAILABLE_ERRORS

    def acquire_entry(self, key: str, limit: int, expiry: int, amount: int = 1) -> bool:
        if amount > limit:
            return False
        digest = _digest(key)
        with self._counting(digest) as (connection, now):
            count, _ = connection.execute(_window(digest, now)).one()
            acquired = count + amount <= limit
            if acquired:
                _add(connection, digest, now + timedelta(seconds=expiry), amount)
        return acquired

    def get_moving_window(self, key: str, limit: int, expiry: int) -> tuple[float, int]:
        with self._db.reading() as session:
            now = database_now(session.connection())
            count, first_end = session.execute(_window(_digest(key), now)).one()
        if not count:
            return now.timestamp(), 0
        first: datetime = first_end - timedelta(seconds=expiry)
        return first.timestamp(), int(count)

    def clear(self, key: str) -> None:
        with self._db.writing(durable=False) as connection:
            connection.execute(sa.delete(_HITS).where(_HITS.c.key == _digest(key)))

    def reset(self) -> int | None:
        with self._db.writing(durable=False) as connection:
            return connection.execute(sa.delete(_HITS)).rowcount

    @contextlib.contextmanager
    def _counting(self, digest: str) -> Iterator[tuple[sa.Connection, datetime]]:
        """A key's counting transaction (steps 1 and 4 of the module's list around the caller's 2 and 3):
        the key's lock on PostgreSQL, the database's time, and the sweep of ended hits after."""
        with self._db.writing(durable=False) as connection:
            if connection.dialect.name == "postgresql":
                connection.execute(_LOCK_KEY, {"space": _LOCK_SPACE, "key": _lock_key(digest)})
            now = database_now(connection)
            yield connection, now
            connection.execute(_sweep(now))

    def check(self) -> bool:
        try:
            self._db.ping()
        except UNAVAILABLE_ERRORS:
            return False
        return True

    # The fixed window's operations (the console counts in a moving window; these make the storage whole
    # for the library's other strategies): a window's hits all end when the window does.
    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        digest = _digest(key)
        with self._counting(digest) as (connection, now):
            count, window_end = connection.execute(_window(digest, now)).one()
            _add(connection, digest, window_end or now + timedelta(seconds=expiry), amount)  # none: a new window
        return int(count) + amount

    def get(self, key: str) -> int:
        with self._db.reading() as session:
            count, _ = session.execute(_window(_digest(key), database_now(session.connection()))).one()
        return int(count)

    def get_expiry(self, key: str) -> float:
        with self._db.reading() as session:
            now = database_now(session.connection())
            _, window_end = session.execute(_window(_digest(key), now)).one()
        return (window_end or now).timestamp()


def _window(digest: str, now: datetime) -> sa.Select:
    """The key's hits that still count, and when the first of them ends."""
    return sa.select(sa.func.count(), sa.func.min(_HITS.c.expires_at)).where(
        _HITS.c.key == digest, _HITS.c.expires_at > now
    )


def _add(connection: sa.Connection, digest: str, expires_at: datetime, amount: int) -> None:
    if amount > 0:
        connection.execute(sa.insert(_HITS), [{"key": digest, "expires_at": expires_at}] * amount)


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def _lock_key(digest: str) -> int:
    """A signed 32-bit number from the key's hash (two keys that share one only wait for each other)."""
    return int.from_bytes(bytes.fromhex(digest[:8]), "big", signed=True)


def _sweep(now: datetime) -> sa.Delete:
    # SKIP LOCKED (PostgreSQL; SQLite has one writer anyway): processes sweeping at once take different
    # rows instead of waiting for, or deadlocking on, each other's.
    ended = (
        sa.select(_HITS.c.id)
        .where(_HITS.c.expires_at <= now)
        .limit(SWEEP_BATCH)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    return sa.delete(_HITS).where(_HITS.c.id.in_(ended))
