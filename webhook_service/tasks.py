"""The queue (Huey) that wakes download workers: SQLite storage under the data directory by default,
Redis when REDIS_URL is set. It carries attachment ids only; the database says what is to be done, so
a lost or duplicated task is harmless (the sweep re-enqueues, the claim makes duplicates no-ops)."""
from __future__ import annotations

import functools
import logging
import os
import socket
import threading
import uuid
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from huey import Huey, MemoryHuey, RedisHuey, SqliteHuey, crontab
from huey.consumer import Consumer, Worker
from huey.signals import SIGNAL_EXECUTING
from huey.storage import SqliteStorage

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
            self.huey = _EmbeddedHuey(name, filename=str((settings.data_dir / "queue.db").resolve()),
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
        # Consumers of the embedded queue in other processes (`worker` runs one per CPU) are woken
        # through sockets here, by a consumer that starts a task and by whoever enqueues one; each
        # consumer process wakes its own threads directly.
        self._wake_directory = None if self.huey.storage.blocking or settings.queue.immediate \
            else settings.data_dir.resolve() / "wake"
        self._wake_sender: socket.socket | None = None
        self._wake_sender_pid = 0

    def enqueue(self, attachment_ids: list[str], eta: datetime | None = None) -> None:
        for attachment_id in attachment_ids:
            if eta is None:
                self._download(attachment_id)
            else:
                self._download.schedule(args=(attachment_id,), eta=eta)
        if attachment_ids and eta is None and self._wake_directory is not None:
            # Idle consumers would find the work only on their next poll, up to a second from now.
            try:
                wake_consumers(self._wake_directory, self._sender())
            except OSError:
                pass  # no socket to send from (out of descriptors): the tasks are queued all the same

    def _sender(self) -> socket.socket:
        # One per process: a socket inherited through fork() is shared with the parent.
        if self._wake_sender is None or self._wake_sender_pid != os.getpid():
            self._wake_sender, self._wake_sender_pid = _wake_sender(), os.getpid()
        return self._wake_sender

    def close(self) -> None:
        if self._wake_sender is not None:
            self._wake_sender.close()
            self._wake_sender = None

    def ping(self) -> None:
        """Raise when the queue's storage cannot be reached."""
        self.huey.storage.queue_size()

    def consumer(self, threads: int, periodic: bool = True) -> Consumer:
        # Idle workers poll the embedded queue at most a second apart (huey's default backs off to
        # 10 s): a webhook's attachments should start downloading at once, and some providers' media
        # links are short-lived. (The Redis queue blocks on the list instead of polling.)
        return _SiblingWakingConsumer(self.huey, wake_directory=self._wake_directory, workers=threads,
                                      worker_type="thread", periodic=periodic, check_worker_health=True,
                                      initial_delay=0.05, backoff=1.5, max_delay=1.0)


class _EmbeddedQueueStorage(SqliteStorage):
    def delete_data(self, key: str) -> bool:
        # huey clears a task's revocation flag after every run, in an exclusive transaction: it waits
        # behind the other workers' dequeues (across processes in SQLite's busy handler, holding this
        # storage's one connection lock meanwhile). Tasks are seldom revoked, so look first: a read
        # in WAL mode takes no lock.
        return self.has_data_for_key(key) and super().delete_data(key)


class _EmbeddedHuey(SqliteHuey):
    storage_class = _EmbeddedQueueStorage


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


def wake_consumers(directory: Path, sender: socket.socket, skip: Path | None = None) -> None:
    """Send a wake-up to every consumer process listening in `directory` (see WakeChannel)."""
    try:
        entries = [entry.path for entry in os.scandir(directory) if entry.path != str(skip)]
    except OSError:
        return  # no consumer has started yet
    for path in entries:
        try:
            sender.sendto(b"w", path)
        except BlockingIOError:
            pass  # its buffer is full of wake-ups it has not read yet: it is awake anyway
        except ConnectionRefusedError:
            Path(path).unlink(missing_ok=True)  # nobody listens there any more
        except OSError:
            pass  # removed meanwhile, or not a socket: nothing to wake


def _wake_sender() -> socket.socket:
    sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sender.setblocking(False)
    return sender


class WakeChannel:
    """Wake-ups between the consumer processes that share one embedded queue (one data directory).

    Each process binds a Unix datagram socket in `directory`; the process that starts a task sends a
    byte to every other socket there, and each receiver wakes its own idle threads. Without it, the
    other processes would find a burst only when their own polling delay ran out, up to a second later.
    A socket left by a process that died refuses datagrams and is removed by the next sender.
    """

    # sun_path holds 108 bytes on Linux, with the terminating NUL.
    MAX_PATH_BYTES = 107

    def __init__(self, directory: Path, on_wake):
        self._directory = directory
        self._path = directory / f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        if len(os.fsencode(self._path)) > self.MAX_PATH_BYTES:
            raise OSError(f"socket path too long for a Unix socket ({len(os.fsencode(self._path))} bytes): {self._path}")
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._receiver.bind(str(self._path))
        self._sender = _wake_sender()
        self._on_wake = on_wake
        self._closed = False
        self._listener = threading.Thread(target=self._listen, name="wake-channel", daemon=True)
        self._listener.start()

    def wake_others(self) -> None:
        wake_consumers(self._directory, self._sender, skip=self._path)

    def close(self) -> None:
        self._closed = True
        try:
            self._sender.sendto(b"", str(self._path))  # ends the listener's wait
        except OSError:
            pass
        self._path.unlink(missing_ok=True)
        self._listener.join(timeout=1)
        self._sender.close()
        self._receiver.close()

    def _listen(self) -> None:
        while not self._closed:
            try:
                self._receiver.recv(64)
            except OSError:
                return
            if not self._closed:
                self._on_wake()


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
    def __init__(self, huey: Huey, wake_directory: Path | None = None, **options):
        self.idle_workers = IdleWorkers()
        # huey makes its workers through worker_class with its own arguments; ours adds the siblings.
        self.worker_class = functools.partial(_SiblingWakingWorker, idle_workers=self.idle_workers)
        super().__init__(huey, **options)
        self._wake_directory = wake_directory
        self._wake_channel: WakeChannel | None = None
        if not huey.storage.blocking:
            huey.signal(SIGNAL_EXECUTING)(self._task_started)

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

    def _task_started(self, signal, task) -> None:
        self.idle_workers.wake()
        if self._wake_channel is not None:
            self._wake_channel.wake_others()

    def stop(self, graceful: bool = False) -> None:
        self.stop_flag.set()
        self.idle_workers.wake()  # sleeping workers notice the stop flag now, not a second later
        super().stop(graceful)
        if self._wake_channel is not None:
            self._wake_channel.close()
            self._wake_channel = None
