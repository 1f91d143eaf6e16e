"""The queue (Huey) that wakes download workers: SQLite storage under the data directory by default,
Redis when REDIS_URL is set. It carries attachment ids only; the database says what is to be done, so
a lost or duplicated task is harmless (the sweep re-enqueues, the claim makes duplicates no-ops)."""
from __future__ import annotations

import functools
import logging
import threading
from datetime import datetime
from typing import TYPE_CHECKING

from huey import Huey, MemoryHuey, RedisHuey, SqliteHuey, crontab
from huey.consumer import Consumer, Worker
from huey.signals import SIGNAL_EXECUTING

from .logs import log

if TYPE_CHECKING:
    from .runtime import Runtime

logger = logging.getLogger("webhook_service.tasks")


class DownloadQueue:
    """The Huey instance with this service's two tasks registered on it."""

    def __init__(self, runtime: "Runtime"):
        settings = runtime.settings
        name = settings.queue.name
        if settings.queue.immediate:
            # Tasks run inline when enqueued: for tests and one-off CLI use, never for serving.
            self.huey: Huey = MemoryHuey(name, immediate=True, results=False)
        elif settings.redis_url:
            self.huey = RedisHuey(name, url=settings.redis_url, results=False)
        else:
            settings.data_dir.mkdir(parents=True, exist_ok=True)
            # fsync off: the queue holds only wake-ups that the sweep can recreate from the database.
            self.huey = SqliteHuey(name, filename=str((settings.data_dir / "queue.db").resolve()),
                                   results=False, fsync=False, timeout=10)

        @self.huey.task(name="download_attachment")
        def download_attachment(attachment_id: str) -> None:
            from .media.pipeline import process_attachment

            process_attachment(runtime, attachment_id)

        @self.huey.periodic_task(crontab(minute="*"), name="sweep_pending_attachments")
        def sweep_pending_attachments() -> None:
            from .media.pipeline import sweep_pending

            count = sweep_pending(runtime)
            if count:
                log(logger, "sweep_enqueued", attachments=count)

        self._download = download_attachment
        self.sweep = sweep_pending_attachments

    def enqueue(self, attachment_ids: list[str], eta: datetime | None = None) -> None:
        for attachment_id in attachment_ids:
            if eta is None:
                self._download(attachment_id)
            else:
                self._download.schedule(args=(attachment_id,), eta=eta)

    def ping(self) -> None:
        """Raise when the queue's storage cannot be reached."""
        self.huey.storage.queue_size()

    def consumer(self, threads: int) -> Consumer:
        # Idle workers poll the embedded queue at most a second apart (huey's default backs off to
        # 10 s): a webhook's attachments should start downloading at once, and some providers' media
        # links are short-lived. (The Redis queue blocks on the list instead of polling.)
        return _SiblingWakingConsumer(self.huey, workers=threads, worker_type="thread", periodic=True,
                                      check_worker_health=True, initial_delay=0.05, backoff=1.5,
                                      max_delay=1.0)


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
    def __init__(self, *args, idle_workers: IdleWorkers, **kwargs):
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


class _SiblingWakingConsumer(Consumer):
    def __init__(self, huey: Huey, **options):
        self.idle_workers = IdleWorkers()
        # huey makes its workers through worker_class with its own arguments; ours adds the siblings.
        self.worker_class = functools.partial(_SiblingWakingWorker, idle_workers=self.idle_workers)
        super().__init__(huey, **options)
        if not huey.storage.blocking:
            huey.signal(SIGNAL_EXECUTING)(lambda signal, task: self.idle_workers.wake())

    def stop(self, graceful: bool = False) -> None:
        self.stop_flag.set()
        self.idle_workers.wake()  # sleeping workers notice the stop flag now, not a second later
        super().stop(graceful)
