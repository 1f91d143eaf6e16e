"""The queue (Huey) that wakes the workers: SQLite storage under the data directory by default, Redis
when REDIS_URL is set. It carries attachment ids (a download) and endpoint ids (a turn of push delivery)
only; the database says what is to be done, so a lost or duplicated task is harmless (the sweeps
re-enqueue, the claims make duplicates no-ops)."""

from __future__ import annotations

import functools
import logging
import os
import socket
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from huey import Huey, MemoryHuey, RedisHuey, SqliteHuey, crontab
from huey.storage import SqliteStorage
from redis import ConnectionPool

from webhook_service.config.model import QueueSettings
from webhook_service.database.leases import Lease
from webhook_service.database.outage import UNAVAILABLE_ERRORS, driver_error, first_line
from webhook_service.observability.logs import log
from webhook_service.worker.consumer import SiblingWakingConsumer
from webhook_service.worker.wake import wake_consumers, wake_sender

logger = logging.getLogger("webhook_service.worker")

DOWNLOAD_TASK = "download_attachment"
DELIVERY_TASK = "deliver_to_endpoint"
SWEEP_TASK = "sweep_pending_attachments"
DELIVERY_SWEEP_TASK = "sweep_deliveries"
# Every worker schedules the sweep every minute (huey runs the periodic task on whichever consumer takes
# it from the shared queue), and the one that takes this lease first runs it. Its term is shorter than
# the minute between runs, so the next run finds it free, and longer than a run's 45 s budget
# (media/pipeline.py), so runs never overlap; a worker that dies holding it delays the next run at most
# that long.
SWEEP_LEASE_SECONDS = 55.0

Task = Callable[..., None]


def put_off_while_the_database_is_down(name: str) -> Callable[[Task], Task]:
    """A task that finds the database down is put off, in one line, rather than failed with huey's
    traceback ("Unhandled exception in task"), two a minute from the sweeps alone and one per queued
    wake-up: nothing is lost, as the database says what is to be done and the sweeps find it again."""

    def decorate(function: Task) -> Task:
        @functools.wraps(function)
        def run(*arguments: Any) -> None:
            try:
                function(*arguments)
            except UNAVAILABLE_ERRORS as error:
                reason = first_line(driver_error(error))
                log(logger, "task_put_off", logging.WARNING, task=name, reason=reason, arguments=list(arguments))

        return run

    return decorate


class DownloadQueue:
    """The Huey instance with this service's tasks registered on it: `process` an attachment by id, and
    `sweep` (every minute, by whichever worker takes `sweep_lease`) for attachments whose wake-up was
    lost, told how many tasks the queue already holds; with `deliver`, a delivery turn for an endpoint by
    id, and `sweep_deliveries` every minute (which takes a lease of its own)."""

    def __init__(
        self,
        settings: QueueSettings,
        *,
        data_dir: Path,
        redis_url: str | None,
        process: Callable[[str], object],
        sweep: Callable[[int], int],
        sweep_lease: Lease,
        deliver: Callable[[str], object] | None = None,
        sweep_deliveries: Callable[[], object] | None = None,
    ):
        name = settings.name
        if settings.immediate:
            # Tasks run inline when enqueued: for tests and one-off CLI use, never for serving.
            self.huey: Huey = MemoryHuey(name, immediate=True, results=False)
        elif redis_url:
            # The consumers' connection: their blocking reads wait up to a second for work, longer than
            # the enqueue timeout, so it keeps redis-py's own timeouts.
            self.huey = RedisHuey(name, url=redis_url, results=False)
        else:
            data_dir.mkdir(parents=True, exist_ok=True)
            # fsync off: the queue holds only wake-ups that the sweep can recreate from the database.
            self.huey = _EmbeddedHuey(
                name, filename=str((data_dir / "queue.db").resolve()), results=False, fsync=False, timeout=10
            )
        # Enqueues and the readiness check go through a connection of their own with short timeouts: an
        # enqueue is only a trigger, which the sweep makes again from the database, so a frozen Redis
        # (which accepts connections and never answers) must not hold a webhook for redis-py's 5 s.
        self._enqueuer = (
            RedisHuey(name, connection_pool=_enqueue_pool(redis_url, settings.enqueue_timeout_seconds), results=False)
            if redis_url and not settings.immediate
            else self.huey
        )

        @put_off_while_the_database_is_down(DOWNLOAD_TASK)
        def download_attachment(attachment_id: str) -> None:
            process(attachment_id)

        self._download = self._task(DOWNLOAD_TASK, download_attachment)

        @self.huey.periodic_task(crontab(minute="*"), name=SWEEP_TASK)
        @put_off_while_the_database_is_down(SWEEP_TASK)
        def sweep_pending_attachments() -> None:
            if not sweep_lease.take():
                held = sweep_lease.state()
                log(
                    logger,
                    "sweep_skipped",
                    logging.DEBUG,
                    lease_holder=held.holder if held else None,
                    lease_expires_at=held.expires_at.isoformat() if held else None,
                )
                return
            sweep(self.waiting())

        self.sweep = sweep_pending_attachments
        self.delivery_sweep: Any = None
        self._deliver: Any = None
        if deliver is not None:

            @put_off_while_the_database_is_down(DELIVERY_TASK)
            def deliver_to_endpoint(endpoint_id: str) -> None:
                deliver(endpoint_id)

            self._deliver = self._task(DELIVERY_TASK, deliver_to_endpoint)
        if sweep_deliveries is not None:

            @self.huey.periodic_task(crontab(minute="*"), name=DELIVERY_SWEEP_TASK)
            @put_off_while_the_database_is_down(DELIVERY_SWEEP_TASK)
            def sweep_pending_deliveries() -> None:
                sweep_deliveries()

            self.delivery_sweep = sweep_pending_deliveries

        # Consumers of the embedded queue in other processes (`worker` runs one per CPU) are woken
        # through sockets here, by a consumer that starts a task and by whoever enqueues one; each
        # consumer process wakes its own threads directly.
        self._wake_directory = None if self.huey.storage.blocking or settings.immediate else data_dir.resolve() / "wake"
        self._idle_poll_seconds = settings.idle_poll_seconds
        self._runs_inline = settings.immediate
        self._wake_sender: socket.socket | None = None
        self._wake_sender_pid = 0

    def _task(self, name: str, function: Callable[[str], None]) -> Any:
        """`function` as the task `name`: enqueued through the enqueuer, run by the consumers."""
        task = self._enqueuer.task(name=name)(function)
        if self._enqueuer is not self.huey:
            self.huey.task(name=name)(function)  # what the consumers run
        return task

    def enqueue(self, attachment_ids: list[str], eta: datetime | None = None) -> None:
        self._enqueue(self._download, attachment_ids, eta)

    def enqueue_deliveries(self, endpoint_ids: list[str], eta: datetime | None = None) -> None:
        """Ask for a delivery turn for each endpoint, now or at `eta`."""
        if self._deliver is None:
            raise RuntimeError("this queue was made without deliveries")
        self._enqueue(self._deliver, endpoint_ids, eta)

    def _enqueue(self, task: Any, ids: list[str], eta: datetime | None) -> None:
        if eta is not None and self._runs_inline:
            # An inline queue keeps no schedule that anything runs, and huey would run a task whose time
            # had passed while this thread was held up at once, inside the attempt that asked for it. The
            # sweep (or a test) takes the work up when it is due.
            return
        for item in ids:
            if eta is None:
                task(item)
            else:
                task.schedule(args=(item,), eta=eta)
        if ids and self._wake_directory is not None:
            # Idle consumers would find the work only on their next poll. A task for later goes in the
            # queue too: a consumer must take it out to put it on its schedule.
            try:
                wake_consumers(self._wake_directory, self._sender())
            except OSError:
                pass  # no socket to send from (out of descriptors): the tasks are queued all the same

    def _sender(self) -> socket.socket:
        # One per process: a socket inherited through fork() is shared with the parent.
        if self._wake_sender is None or self._wake_sender_pid != os.getpid():
            self._wake_sender, self._wake_sender_pid = wake_sender(), os.getpid()
        return self._wake_sender

    def close(self) -> None:
        if self._wake_sender is not None:
            self._wake_sender.close()
            self._wake_sender = None

    def ping(self) -> None:
        """Raise when the queue's storage cannot be reached (within the enqueue timeout, on Redis)."""
        self.waiting()

    def waiting(self) -> int:
        """How many tasks wait in the queue now (scheduled retries not counted: they are not due)."""
        count: int = self._enqueuer.pending_count()
        return count

    def consumer(
        self, threads: int, periodic: bool = True, after_stop: Callable[[], None] | None = None
    ) -> SiblingWakingConsumer:
        # Idle workers of the embedded queue are woken for every task that reaches it (an enqueue from any
        # process through the wake sockets; huey's scheduler, queueing a retry that fell due, through the
        # storage's hook in this process), so their own poll is only a safety net, at a steady interval
        # rather than huey's delay backing off to 10 s. (The Redis queue blocks on the list instead.)
        consumer = SiblingWakingConsumer(
            self.huey,
            wake_directory=self._wake_directory,
            after_stop=after_stop,
            workers=threads,
            worker_type="thread",
            periodic=periodic,
            check_worker_health=True,
            initial_delay=self._idle_poll_seconds,
            backoff=1.0,
            max_delay=self._idle_poll_seconds,
        )
        if isinstance(self.huey.storage, _EmbeddedQueueStorage):
            self.huey.storage.on_enqueued = consumer.wake_all
        return consumer


class _EmbeddedQueueStorage(SqliteStorage):
    # Set by a consumer in its own process: its idle workers look at once at a task just written here,
    # in particular one that huey's scheduler queues when its time comes (which wakes nobody else).
    on_enqueued: Callable[[], None] | None = None

    def enqueue(self, data: bytes, priority: float | None = None) -> None:
        super().enqueue(data, priority)
        if self.on_enqueued is not None:
            self.on_enqueued()  # after the write: a worker woken before it would find nothing

    def delete_data(self, key: str) -> bool:
        # huey clears a task's revocation flag after every run, in an exclusive transaction: it waits
        # behind the other workers' dequeues (across processes in SQLite's busy handler, holding this
        # storage's one connection lock meanwhile). Tasks are seldom revoked, so look first: a read
        # in WAL mode takes no lock.
        return self.has_data_for_key(key) and super().delete_data(key)


class _EmbeddedHuey(SqliteHuey):
    storage_class = _EmbeddedQueueStorage


def _enqueue_pool(redis_url: str, timeout: float) -> ConnectionPool:
    # Connecting and each answer get the same short bound; redis-py retries nothing unless asked to.
    return ConnectionPool.from_url(redis_url, socket_timeout=timeout, socket_connect_timeout=timeout)
