"""The intake's spool: verified webhooks that could not be stored while the database was unreachable,
kept in a local file, fsynced, until the drainer (spool_drainer.py) stores them.

One spool per data directory, on this host's disk (`data_dir/spool/`), shared by every process that uses
that data directory:

    requests.spool   the records (spool_format.py), appended in the order they were acknowledged
    append.lock      held (flock) by the one process appending, or reading where complete writes end
    drain.lock       held (flock) by the one drainer at work
    progress         how far the drainer has got: the file's generation and an offset, fsynced
    damaged/         bytes that were no record (a write a crash cut off), set aside for operators

An append is written whole and fsynced before the webhook is acknowledged; a write that fails (a full
disk) is cut back off the file, so nothing is left that was not acknowledged. Past `max_bytes` nothing
more is taken (the intake answers 503 as without a spool). Once the drainer has stored everything in the
file, it removes the file (the next append starts a new one, with a new generation).
"""

from __future__ import annotations

import bisect
import contextlib
import fcntl
import logging
import mmap
import os
import secrets
import struct
import threading
import zlib
from array import array
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from webhook_service.intake.spool_format import (
    FILE_HEADER_BYTES,
    GENERATION_BYTES,
    Buffer,
    Damage,
    Frame,
    SpooledRequest,
    arrival_time,
    encode,
    file_header,
    frame_at,
    generation_of,
    scan,
)
from webhook_service.observability import metrics
from webhook_service.observability.logs import log

logger = logging.getLogger("webhook_service.intake")

SPOOL_FILE = "requests.spool"
# The room a request needs, as far as /readyz can tell before one is written: the largest record in the
# spool file, and at least this (a typical webhook with its headers).
TYPICAL_RECORD_BYTES = 4096
_PROGRESS = struct.Struct(">16sQI")  # generation, offset, CRC32 of the two


class SpoolUnavailable(Exception):
    """The request could not be spooled: it is answered 503, as without a spool."""

    def __init__(self, reason_code: str, detail: str):
        super().__init__(f"{reason_code}: {detail}")
        self.reason_code = reason_code  # spool_full | spool_unwritable
        self.detail = detail


@dataclass(frozen=True)
class SpoolStatus:
    depth: int  # requests waiting to be stored
    bytes: int  # the spool file's size, counted against max_bytes
    max_bytes: int
    oldest_received_at: datetime | None  # arrival time of the oldest waiting request
    accepting: bool  # room for another request, as far as can be told before writing it

    def oldest_age_seconds(self, now: datetime | None = None) -> float:
        if self.oldest_received_at is None:
            return 0.0
        return max(0.0, ((now or datetime.now(UTC)) - self.oldest_received_at).total_seconds())

    def as_json(self) -> dict:
        return {
            "depth": self.depth,
            "bytes": self.bytes,
            "maxBytes": self.max_bytes,
            "oldestAgeSeconds": round(self.oldest_age_seconds(), 3),
            "accepting": self.accepting,
        }


@dataclass
class SpoolView:
    """The spool file as far as complete writes go (`end`), mapped for reading."""

    generation: bytes
    end: int
    data: Buffer


class _ProcessFileLock:
    """An flock on a file in the spool directory, taken by one thread of this process at a time (flock
    is per open file, which this process's threads would share)."""

    def __init__(self, path: Path):
        self._path = path
        self._threads = threading.Lock()
        self._descriptor: int | None = None
        self._owner_pid = 0

    @contextlib.contextmanager
    def held(self, *, wait: bool = True) -> Iterator[bool]:
        """True while held; with wait=False, False at once when another process holds it."""
        if not self._threads.acquire(blocking=wait):
            yield False
            return
        try:
            if self._descriptor is None or self._owner_pid != os.getpid():  # not inherited across fork()
                self._descriptor = os.open(self._path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
                self._owner_pid = os.getpid()
            try:
                fcntl.flock(self._descriptor, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(self._descriptor, fcntl.LOCK_UN)
        finally:
            self._threads.release()


class RequestSpool:
    def __init__(self, directory: Path, *, max_bytes: int):
        self.directory = directory
        self.max_bytes = max_bytes
        self.path = directory / SPOOL_FILE
        self._progress_path = directory / "progress"
        self._append_lock = _ProcessFileLock(directory / "append.lock")
        self._drain_lock = _ProcessFileLock(directory / "drain.lock")
        self._appender: int | None = None  # this process's descriptor on the spool file
        self._appender_pid = 0
        self._status = _StatusIndex()

    # Appending (web threads, during an outage) -----------------------------------------------------
    def append(self, spooled: SpooledRequest) -> int:
        """Write the request and fsync it; the spool's size after it. SpoolUnavailable when it is past
        the budget or cannot be written, and then nothing of it stays in the file."""
        frame = encode(spooled)
        try:
            self._make_directory()
            with self._append_lock.held():
                descriptor = self._appending_file()
                size = os.fstat(descriptor).st_size
                if size + len(frame) > self.max_bytes:
                    raise SpoolUnavailable(
                        "spool_full",
                        f"{size} of {self.max_bytes} bytes used (spool_max_bytes), {len(frame)} more needed",
                    )
                try:
                    _write_whole(descriptor, frame)
                    os.fdatasync(descriptor)
                except OSError:
                    _cut_back(descriptor, size)
                    raise
                return size + len(frame)
        except OSError as error:
            # A full disk, a quota, a directory that is gone or read-only: the request is not kept here.
            raise SpoolUnavailable("spool_unwritable", error.strerror or str(error)) from error

    def _make_directory(self) -> None:
        if not self.directory.is_dir():
            self.directory.mkdir(parents=True, exist_ok=True)
            _sync_directory(self.directory.parent)

    def _appending_file(self) -> int:
        """This process's descriptor on the current spool file (made, with its header, if there is none).
        Reopened when the drainer has removed the file it had open."""
        if self._appender is not None and self._appender_pid == os.getpid():
            try:
                current = os.stat(self.path)
                held = os.fstat(self._appender)
                if (current.st_dev, current.st_ino) == (held.st_dev, held.st_ino):
                    return self._appender
            except FileNotFoundError:
                pass
            os.close(self._appender)
        self._appender = None
        descriptor = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        try:
            size = os.fstat(descriptor).st_size
            if generation_of(os.pread(descriptor, FILE_HEADER_BYTES, 0)) is None:
                if size >= FILE_HEADER_BYTES:
                    # Not a spool file (nothing of ours writes one): kept for operators, never overwritten.
                    os.close(descriptor)
                    self._set_aside_file(self.path)
                    return self._appending_file()
                # New, or its header cut off by a crash before any record could follow it.
                self._make_progress_file()
                os.ftruncate(descriptor, 0)
                _write_whole(descriptor, file_header(secrets.token_bytes(GENERATION_BYTES)))
                os.fdatasync(descriptor)
                _sync_directory(self.directory)
        except BaseException:
            os.close(descriptor)
            raise
        self._appender, self._appender_pid = descriptor, os.getpid()
        return descriptor

    def _make_progress_file(self) -> None:
        """Made with the spool file, so that the drainer only ever overwrites it: noting progress then
        needs no new space, even when the records have filled the disk."""
        try:
            descriptor = os.open(self._progress_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        except FileExistsError:
            return
        try:
            _write_whole(descriptor, bytes(_PROGRESS.size))  # no generation: reads as no progress
            os.fdatasync(descriptor)
        finally:
            os.close(descriptor)
        _sync_directory(self.directory)

    # Reading and draining (the drainer) ----------------------------------------------------------------
    @contextlib.contextmanager
    def drain_turn(self) -> Iterator[bool]:
        """True for the one drainer at work; False when another process (or thread) drains."""
        with self._drain_lock.held(wait=False) as mine:
            yield mine

    @contextlib.contextmanager
    def view(self) -> Iterator[SpoolView | None]:
        """The spool file up to where complete writes end (read while no writer is appending), or None
        when there is no spool file."""
        if not self.path.exists():
            yield None
            return
        with self._append_lock.held():
            try:
                descriptor = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                descriptor = None
            end = os.fstat(descriptor).st_size if descriptor is not None else 0
        if descriptor is None:
            yield None
            return
        try:
            generation = generation_of(os.pread(descriptor, FILE_HEADER_BYTES, 0))
            if generation is None or end < FILE_HEADER_BYTES:  # its first writer is making it: nothing in it yet
                yield None
                return
            with mmap.mmap(descriptor, end, access=mmap.ACCESS_READ) as data:
                yield SpoolView(generation, end, data)
        finally:
            os.close(descriptor)

    def drained_to(self, generation: bytes) -> int:
        """Where the drainer goes on in the file of `generation` (its start when it has not begun)."""
        try:
            with open(self._progress_path, "rb") as handle:
                packed = handle.read(_PROGRESS.size)
            recorded, offset, checksum = _PROGRESS.unpack(packed)
        except (FileNotFoundError, struct.error):
            return FILE_HEADER_BYTES
        # A progress write cut off by a crash reads as no progress: everything is stored again, and the
        # intake stores nothing twice.
        if recorded != generation or zlib.crc32(packed[:-4]) != checksum:
            return FILE_HEADER_BYTES
        return max(offset, FILE_HEADER_BYTES)

    def mark_drained(self, generation: bytes, offset: int) -> None:
        """Durably: the drainer has stored everything before `offset`."""
        self._make_progress_file()
        packed = generation + struct.pack(">Q", offset)
        descriptor = os.open(self._progress_path, os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.pwrite(descriptor, packed + struct.pack(">I", zlib.crc32(packed)), 0)
            os.fdatasync(descriptor)
        finally:
            os.close(descriptor)

    def set_aside(self, view: SpoolView, damage: Damage) -> Path | None:
        """Keep damaged bytes under damaged/ (fsynced) before the drainer passes them; None when they
        cannot be written (a full disk): they are no request that was acknowledged (an acknowledged
        record was written whole and fsynced), and the requests after them must not wait for space."""
        directory = self.directory / "damaged"
        path = directory / f"{view.generation.hex()}-{damage.offset}.bin"
        try:
            directory.mkdir(exist_ok=True)
            _write_file(path, bytes(view.data[damage.offset : damage.end]))
            _sync_directory(directory)
        except OSError as error:
            log(
                logger,
                "spool_set_aside_failed",
                logging.ERROR,
                offset=damage.offset,
                error=error.strerror or str(error),
            )
            with contextlib.suppress(OSError):
                path.unlink()
            return None
        return path

    def _set_aside_file(self, path: Path) -> None:
        directory = self.directory / "damaged"
        directory.mkdir(exist_ok=True)
        os.rename(path, directory / f"unreadable-{datetime.now(UTC):%Y%m%dT%H%M%S%f}.spool")
        _sync_directory(directory)
        _sync_directory(self.directory)
        log(logger, "spool_file_set_aside", logging.ERROR, directory=str(directory))

    def retire(self, view: SpoolView) -> bool:
        """Remove the spool file once everything in it is stored; False when a request was appended since
        the view was taken (the drainer goes on with it)."""
        with self._append_lock.held():
            try:
                with open(self.path, "rb") as handle:
                    header = handle.read(FILE_HEADER_BYTES)
                    size = os.fstat(handle.fileno()).st_size
            except FileNotFoundError:
                return True
            if generation_of(header) != view.generation or size != view.end:
                return False
            os.unlink(self.path)
            _sync_directory(self.directory)
        return True

    # Reporting ---------------------------------------------------------------------------------------
    def status(self) -> SpoolStatus:
        """Depth, size, the oldest waiting request's arrival time, and whether a request like the largest
        in the file would still be taken (within the budget, and room for it on the disk); the gauges of
        /metrics are set from it."""
        with self._status.lock:
            depth, size, oldest, largest = self._status.refresh(self)
        room_needed = max(largest, TYPICAL_RECORD_BYTES)
        accepting = size + room_needed <= self.max_bytes and _free_bytes(self.directory) >= room_needed
        status = SpoolStatus(depth, size, self.max_bytes, oldest, accepting)
        metrics.observe_spool(status.depth, status.bytes, status.oldest_age_seconds())
        return status

    def report(self) -> dict:
        """The status for /readyz."""
        return self.status().as_json()


class _StatusIndex:
    """Where each record of the spool file begins, read once per record (the next status reads only
    what was appended since): 8 bytes a record, so that a spool of a million requests costs each process
    8 MB, not the requests themselves."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self._generation: bytes | None = None
        self._scanned_to = 0
        self._largest = 0
        self._offsets = array("q")

    def refresh(self, spool: RequestSpool) -> tuple[int, int, datetime | None, int]:
        """Depth, size, the oldest waiting request's arrival time, and the largest record's size."""
        with spool.view() as view:
            if view is None:
                self._generation, self._offsets, self._largest = None, array("q"), 0
                return 0, 0, None, 0
            if view.generation != self._generation:
                self._generation, self._scanned_to, self._offsets = view.generation, FILE_HEADER_BYTES, array("q")
                self._largest = 0
            for item in scan(view.data, self._scanned_to, view.end):
                if isinstance(item, Frame):
                    self._offsets.append(item.offset)
                    self._largest = max(self._largest, item.end - item.offset)
            self._scanned_to = max(self._scanned_to, view.end)
            first_waiting = bisect.bisect_left(self._offsets, spool.drained_to(view.generation))
            depth = len(self._offsets) - first_waiting
            # The first waiting record's: records are in the order they were acknowledged, which is the
            # order of arrival but for requests that waited for a database time-out (seconds).
            first = frame_at(view.data, self._offsets[first_waiting], view.end) if depth else None
            oldest = arrival_time(first.payload) if first else None
            return depth, view.end, oldest, self._largest


def _free_bytes(directory: Path) -> int:
    """Space left on the volume the spool is (or will be) on, for an unprivileged writer."""
    path = directory
    while not path.exists() and path != path.parent:
        path = path.parent
    try:
        stats = os.statvfs(path)
    except OSError:
        return 0
    return stats.f_bavail * stats.f_frsize


def _write_whole(descriptor: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(descriptor, view) :]


def _cut_back(descriptor: int, size: int) -> None:
    """Take a failed append back off the file, so that nothing unacknowledged stays in it. If even that
    fails, the drainer finds the partial record and sets it aside."""
    try:
        os.ftruncate(descriptor, size)
        os.fdatasync(descriptor)
    except OSError as error:
        log(logger, "spool_cut_back_failed", logging.ERROR, error=error.strerror or str(error))


def _write_file(path: Path, data: bytes) -> None:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        _write_whole(descriptor, data)
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _sync_directory(directory: Path) -> None:
    """A file made, renamed or removed in `directory` survives a crash once the directory is synced."""
    descriptor = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
