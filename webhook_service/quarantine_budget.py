"""How many bytes of refused request bodies quarantine may hold.

Anyone can POST to a webhook URL. Without a bound, a flood of unsigned 1 MiB requests would fill the
disk, and a full disk refuses valid webhooks too. Past the budget a refused request is still recorded
(method, URL, headers, reason, its size) but its body is not kept, and a log line says so; `prune`
frees the space again.

The total is read from the database at most every REFRESH_SECONDS and counted locally in between, so a
flood costs one SUM per interval per process, not one per request. Processes do not see each other's
counts between reads: together they may overshoot by what they admit within one interval.
"""
from __future__ import annotations

import threading
import time
from typing import Callable

import sqlalchemy as sa

from .db import Database
from .models import QuarantinedRequest

REFRESH_SECONDS = 10.0
STORED_BODY_BYTES = sa.select(sa.func.coalesce(sa.func.sum(sa.func.length(QuarantinedRequest.body)), 0))


class QuarantineBudget:
    def __init__(self, limit_bytes: int, *, refresh_seconds: float = REFRESH_SECONDS,
                 clock: Callable[[], float] = time.monotonic):
        self.limit_bytes = limit_bytes
        self._refresh_seconds = refresh_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._used: int | None = None
        self._read_at = 0.0

    def admit(self, db: Database, size: int) -> bool:
        """Whether a body of `size` bytes may be kept; when it may, it is counted as kept."""
        with self._lock:
            now = self._clock()
            if self._used is None or now - self._read_at >= self._refresh_seconds:
                with db.reading() as session:
                    self._used = int(session.execute(STORED_BODY_BYTES).scalar_one())
                self._read_at = now
            if self._used + size > self.limit_bytes:
                return False
            self._used += size
            return True
