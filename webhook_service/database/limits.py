"""How long the service waits for PostgreSQL, so that a database that stops answering costs a webhook a
503 within seconds instead of holding it (and the thread serving it) until the server comes back.

With the defaults a request waits at most about 5 s: a pooled connection's ping unanswered for 3 s
(`answer_timeout`), then one new connection attempt of 2 s (`connect_timeout`). That is below the 15 s
the most patient providers wait (Twilio), so they see the 503 and its Retry-After; the others (2 s) retry
on their own time-out anyway. What matters to all of them is that the web threads are free again.
"""

from __future__ import annotations

from dataclasses import dataclass

# The client gives the server this much longer than statement_timeout before abandoning the
# connection, so that a server that is alive cancels the statement itself (the connection stays usable)
# and only a server that does not answer at all loses it.
ANSWER_GRACE_SECONDS = 1.0
# Server side: a statement running longer is cancelled. Ours take milliseconds (single-row writes,
# indexed reads); the longest wait for rows other processes' batches have locked.
STATEMENT_TIMEOUT_SECONDS = 2.0
# The engine's execution option that carries `feed_writer_idle_timeout`, in milliseconds, to the feed's
# writers (database/postgres.py sets it, database/feed.py reads it).
FEED_WRITER_IDLE_OPTION = "webhook_service_feed_writer_idle_ms"


@dataclass(frozen=True)
class DatabaseLimits:
    # libpq counts whole seconds and treats anything under 2 as 2.
    connect_timeout: int = 2
    # None: no limit, for migrations, which may rewrite a large table.
    statement_timeout: float | None = STATEMENT_TIMEOUT_SECONDS
    # Waiting for a connection from the pool (15 per process, more than the web threads by default); the
    # connections it waits for are themselves bounded by answer_timeout.
    pool_timeout: float = 2.0

    @property
    def feed_writer_idle_timeout(self) -> float | None:
        """Server side: how long a transaction that holds its place in the event feed may sit idle before
        the server ends its session (database/feed.py); the answer timeout, the client's own limit on
        waiting for the server. None when statements have no limit."""
        return self.answer_timeout

    @property
    def answer_timeout(self) -> float | None:
        """Client side: how long a connection may wait for any answer from the server before it is
        abandoned (database/answer_watchdog.py); None when statements have no limit."""
        if self.statement_timeout is None:
            return None
        return self.statement_timeout + ANSWER_GRACE_SECONDS


DEFAULT_LIMITS = DatabaseLimits()
