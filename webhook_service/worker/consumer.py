"""The queue consumer: huey's, with idle threads that wake each other (and the other consumer
processes, through `wake.py`) as soon as one of them finds work, instead of each polling on its own
growing delay."""

from __future__ import annotations

import functools
import logging
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from huey import Huey
from huey.consumer import Consumer, Worker
from huey.signals import SIGNAL_EXECUTING

from webhook_service.observability.logs import log
from webhook_service.worker.wake import WakeChannel

logger = logging.getLogger("webhook_service.worker")


class IdleWorkers:
    """The idle consumer threads of one process, which any of them can wake.

    Huey's idle workers each poll the queue on their own growing delay, so when a burst arrives (a
    message with ten attachments) the first worker to look takes one task and the others find the
    rest only as their delays run out, up to a second later each. Here the worker that starts a task
    wakes its idle siblings to look at once; those that find nothing go back to sleep."""

    def __init__(self):
        self._condition = threading.Condition()
        self._generation = 0

    @property
    def generation(self) -> int:
        """How many wake-ups so far: read before looking at the queue, passed to sleep()."""
        with self._condition:
            return self._generation

    def wake(self) -> None:
        with self._condition:
            self._generation += 1
            self._condition.notify_all()

    def sleep(self, seconds: float, since: int | None = None) -> bool:
        """Wait up to `seconds`; True when woken by a sibling (or shutdown) rather than the clock.
        With `since` (a generation read before the caller looked at the queue), a wake-up that came
        while it was looking counts too, and the wait ends at once."""
        with self._condition:
            generation = self._generation if since is None else since
            return self._condition.wait_for(lambda: self._generation != generation, timeout=seconds)


class _SiblingWakingWorker(Worker):
    # huey's Worker sets these; declared for the type checker (huey ships no type information).
    delay: float
    default_delay: float
    max_delay: float
    backoff: float

    def __init__(self, *args: Any, idle_workers: IdleWorkers, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.idle_workers = idle_workers
        self._generation_seen: int | None = None

    def loop(self, now=None) -> None:
        # Idle workers poll in step, so a sibling often takes a task and wakes the others while they
        # are still finding the queue empty; read before looking, that wake-up is not lost.
        self._generation_seen = self.idle_workers.generation
        super().loop(now)

    def sleep(self) -> None:
        # As huey's own sleep (a delay growing to max_delay), but a sibling's wake-up cuts it short
        # and starts the backoff over.
        if self.idle_workers.sleep(min(self.delay, self.max_delay), since=self._generation_seen):
            self.delay = self.default_delay
        else:
            self.delay = min(self.delay * self.backoff, self.max_delay)


class SiblingWakingConsumer(Consumer):
    def __init__(
        self,
        huey: Huey,
        wake_directory: Path | None = None,
        after_stop: Callable[[], None] | None = None,
        **options: Any,
    ):
        """`after_stop` runs once the consumer's threads have stopped: what the process must let go of before
        it exits or, on SIGHUP, starts over in place (huey execs the same command, and a child process
        kept from before, such as the delivery books process, would live on beside the new one)."""
        self.idle_workers = IdleWorkers()
        self._after_stop = after_stop
        # huey makes its workers through worker_class with its own arguments; ours adds the siblings.
        self.worker_class = functools.partial(_SiblingWakingWorker, idle_workers=self.idle_workers)
        super().__init__(huey, **options)
        self._wake_directory = wake_directory
        self._wake_channel: WakeChannel | None = None
        if not huey.storage.blocking:
            huey.signal(SIGNAL_EXECUTING)(self._task_started)

    def wake_all(self) -> None:
        """Have every idle thread, here and in the other consumer processes, look at the queue now."""
        self.idle_workers.wake()
        if self._wake_channel is not None:
            self._wake_channel.wake_others()

    def start(self) -> None:
        if self._wake_directory is not None and self._wake_channel is None:
            try:
                self._wake_channel = WakeChannel(self._wake_directory, self.idle_workers.wake)
            except OSError as error:
                # Still correct without it: the other processes find the work on their next poll.
                log(logger, "wake_channel_unavailable", logging.WARNING, reason=str(error))
        # huey installs its handlers last, after logging "consumer started" and starting its threads:
        # a stop signal in between (a supervisor stopping a child it just started) would end the
        # process with a traceback instead of a clean stop. Its handlers only note the signal for the
        # main loop, so they can go first.
        self._set_signal_handlers()
        super().start()

    def _task_started(self, _signal: str, _task: object) -> None:
        self.wake_all()

    def stop(self, graceful: bool = False) -> None:
        self.stop_flag.set()
        self.idle_workers.wake()  # sleeping workers notice the stop flag now, not a second later
        super().stop(graceful)
        if self._wake_channel is not None:
            self._wake_channel.close()
            self._wake_channel = None
        after_stop, self._after_stop = self._after_stop, None
        if after_stop is not None:
            after_stop()
        if self._restart:
            # Ignored, a signal stays ignored across exec: a second SIGHUP while the process starts over
            # (before huey's handler is back) would otherwise end it.
            signal.signal(signal.SIGHUP, signal.SIG_IGN)
