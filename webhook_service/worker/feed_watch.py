"""A thread that looks at the end of the event feed every interval and wakes push delivery for what is
new, so that an event reaches its endpoints within a fraction of a second of its commit rather than at
the minute's sweep. One runs in the consumer process that runs the periodic tasks (one per host);
several are harmless, since a turn claims its endpoint."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from webhook_service.observability.logs import log

logger = logging.getLogger("webhook_service.worker")

# Given the last feed id seen (None at first), wakes the endpoints of newer events; returns the id to
# pass next time.
Look = Callable[["int | None"], "int | None"]


class FeedWatcher:
    def __init__(self, look: Look, catch_up: Callable[[], object], interval: float):
        """`look` runs every `interval`; `catch_up` once, after the first look has found where the feed
        ends, for what arrived before (the backlog a restart left behind)."""
        self._look = look
        self._catch_up = catch_up
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="feed-watch", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        seen: int | None = None
        caught_up = False
        failing = False
        while not self._stop.is_set():
            try:
                seen = self._look(seen)
                if not caught_up:
                    self._catch_up()
                    caught_up = True
                if failing:
                    log(logger, "feed_watch_recovered")
                failing = False
            except Exception as error:  # noqa: BLE001  # a database outage must not end the thread; the sweep covers the gap
                if not failing:
                    log(logger, "feed_watch_failed", logging.WARNING, error=type(error).__name__)
                failing = True
            self._stop.wait(self._interval if not failing else max(self._interval, 1.0))
