"""A delivery turn's database work (books.py) in a process of its own, beside the sending.

While a backlog is sent, reading and rendering the next batch and recording the last one cost as much
Python per event as sending it. On a thread of the worker process the two take turns for the GIL, and
the sending waits for the books at most answers; in a process of their own they run at the same time on
another CPU.

One per worker consumer process, forked when that starts, before it has any thread (so nothing a thread
held is inherited half-done), with the start-up objects frozen first (gc.freeze(), as the web process
does) so that neither side's garbage collector copies the pages they share: the child costs little memory
of its own, though its resident size counts the shared pages too. It works with the TurnBooks the worker
built (its database connections made anew). If it dies, the work it had in hand fails as a database error
would, and the worker's turns do their database work on a thread of their own, as they do with
`delivery.books_process = false`, until the consumer process has started over (gracefully, as on SIGHUP:
cli/consume.py) and forked a new one: a process with threads is not forked again. It ends with the
worker process: when that exits, which asks it to; when that is killed, within ORPHAN_CHECK_SECONDS
(it holds its own copy of the pipe's writing end, so it would wait forever for work).
"""

from __future__ import annotations

import gc
import logging
import multiprocessing
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any

from webhook_service.delivery.books import Batch, Health, Outcome, Place, TurnBooks
from webhook_service.observability.logs import log

logger = logging.getLogger("webhook_service.delivery")

ORPHAN_CHECK_SECONDS = 1.0

# In the books process: what it works with.
_books: TurnBooks | None = None


class BooksProcess:
    def __init__(self, books: TurnBooks, on_lost: Callable[[], None] | None = None):
        """Fork the process now. Call while this process has no other thread. `on_lost` is called once
        if the process dies (see `lost`)."""
        if threading.active_count() > 1:
            raise RuntimeError("a books process is forked before any thread starts")
        gc.freeze()
        self._executor = ProcessPoolExecutor(
            max_workers=1, mp_context=multiprocessing.get_context("fork"), initializer=_begin, initargs=(books,)
        )
        self._started = self._executor.submit(os.getpid)  # forks, then starts the executor's own threads
        self._started.add_done_callback(self._announce)
        self._lost = False
        self._on_lost = on_lost

    def available(self) -> bool:
        """Whether work can go to the process (it has started, and not died)."""
        return not self._lost and self._started.done() and self._started.exception() is None

    def wait_until_available(self, timeout: float) -> bool:
        try:
            self._started.result(timeout)
        except Exception:  # noqa: BLE001  # it did not start: unavailable, as available() says
            pass
        return self.available()

    def next_batch(self, place: Place) -> Future[Batch]:
        return self._executor.submit(_next_batch, place)

    def record(self, endpoint: Any, outcomes: list[Outcome], health: Health) -> Future[None]:
        return self._executor.submit(_record, endpoint, outcomes, health)

    def lost(self, error: BaseException) -> None:
        """The process died (work handed to it failed with BrokenProcessPool): turns keep their books on
        a thread from now on, and `on_lost` is told (a worker's consumer then starts over, gracefully, to
        fork a new one: a process with threads is not forked)."""
        if not self._lost:
            self._lost = True
            log(logger, "delivery_books_process_lost", logging.WARNING, error=repr(error))
            if self._on_lost is not None:
                self._on_lost()

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)

    @staticmethod
    def _announce(started: Future[int]) -> None:
        if started.exception() is None:
            log(logger, "delivery_books_process_started", pid=started.result())


# In the books process ------------------------------------------------------------------------------


def _begin(books: TurnBooks) -> None:
    global _books
    # Connections the worker may have opened belong to it: this process makes its own.
    books.db.engine.dispose(close=False)
    _books = books
    threading.Thread(target=_exit_when_orphaned, args=(os.getppid(),), name="books-orphan-watch", daemon=True).start()


def _exit_when_orphaned(worker: int) -> None:
    while os.getppid() == worker:
        time.sleep(ORPHAN_CHECK_SECONDS)
    os._exit(0)  # the worker is gone, and whatever was in hand with it: a transaction open is rolled back


def _next_batch(place: Place) -> Batch:
    assert _books is not None
    return _books.next_batch(place)


def _record(endpoint: Any, outcomes: list[Outcome], health: Health) -> None:
    assert _books is not None
    _books.record(endpoint, outcomes, health)
