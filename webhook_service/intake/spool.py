"""The intake's spool: verified webhooks that could not be stored while the database was unreachable,
kept in local files, fsynced, until the drainer (spool_drainer.py) stores them.

One spool per data directory, on this host's disk (`data_dir/spool/`), shared by every process that uses
that data directory:

    requests-v2-<n>.spool  the records (spool_format.py) in segments, appended to the newest (highest n)
                        in the order they were acknowledged; a new segment is begun once the newest holds
                        `segment_bytes`
    requests.spool      the one file earlier versions wrote: drained first, never appended to
    requests-<n>.spool  the segments of format 1 (spool_format.py) earlier versions wrote: drained after
                        requests.spool and before the others, never appended to (earlier versions still
                        running during a rolling deploy append to them, and see no other segment)
    append.lock         held (flock) by the one process appending, or reading where complete writes end
    drain.lock          held (flock) by the one drainer at work
    progress            how far the drainer has got in the oldest file: its generation and an offset
    damaged/            bytes that were no record, or records this version cannot read, for operators

An append is written whole and fsynced before the webhook is acknowledged; a write that fails (a full
disk) is cut back off the file, so nothing is left that was not acknowledged. Past `max_bytes` (all the
files together) nothing more is taken (the intake answers 503 as without a spool). Once the drainer has
stored everything in a file, it removes it: beyond the requests that wait, the budget counts at most the
drained part of the one file being drained, a segment of `segment_bytes` (or a single larger record).
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
import time
import zlib
from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from webhook_service.intake.spool_format import (
    FILE_HEADER_BYTES,
    GENERATION_BYTES,
    KEY_BYTES,
    RECORD_HEADER_BYTES,
    Buffer,
    Damage,
    FileHeader,
    Frame,
    SpooledRequest,
    arrival_time,
    file_header,
    frame,
    frame_at,
    header_cut_off,
    largest_record,
    payload_of,
    read_header,
    scan,
)
from webhook_service.observability import metrics
from webhook_service.observability.logs import log

logger = logging.getLogger("webhook_service.intake")

# Earlier versions' one file; drained before the segments (it holds older requests), never appended to.
LEGACY_FILE = "requests.spool"
SEGMENT_PREFIX, SEGMENT_SUFFIX = "requests-v2-", ".spool"
# Earlier versions' segments (format 1), drained before this version's; a name earlier versions do not
# take for theirs is what keeps them from appending format 1 records to a file of format 2.
SEGMENT_PREFIX_V1 = "requests-"
# A segment holds a sixteenth of the budget, and at least this (not a file every few requests for a small
# budget); a record larger than that has a segment of its own.
SEGMENT_FRACTION = 16
SEGMENT_MIN_BYTES = 64 * 1024
# The room a request needs, as far as /readyz can tell before one is written: the largest record in the
# spool, and at least this (a typical webhook with its headers).
TYPICAL_RECORD_BYTES = 4096
# After an append failed (the disk, not the budget), /readyz tries a write of its own this often (at most)
# to learn whether the spool takes requests again.
PROBE_INTERVAL_SECONDS = 1.0
_PROGRESS = struct.Struct(">16sQI")  # generation, offset, CRC32 of the two
LOCK_ATTEMPTS = 3


class SpoolUnavailable(Exception):
    """The request could not be spooled: it is answered 503, as without a spool."""

    def __init__(self, reason_code: str, detail: str):
        super().__init__(f"{reason_code}: {detail}")
        self.reason_code = reason_code  # spool_full | spool_unwritable
        self.detail = detail


@dataclass(frozen=True)
class SpoolStatus:
    depth: int  # requests waiting to be stored
    bytes: int  # the spool files' size, counted against max_bytes
    max_bytes: int
    oldest_received_at: datetime | None  # arrival time of the oldest waiting request
    accepting: bool  # room for another request, and a spool directory that takes it, as far as can be told

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
    """A spool file as far as complete writes go (`end`), mapped for reading."""

    path: Path
    header: FileHeader
    end: int
    data: Buffer

    @property
    def generation(self) -> bytes:
        return self.header.generation

    @property
    def start(self) -> int:
        """Where its records begin."""
        return self.header.size

    def scan(self, start: int, largest: int) -> Iterator[Frame | Damage]:
        return scan(self.data, start, self.end, key=self.header.key, largest=largest)

    def frame_at(self, position: int) -> Frame | None:
        return frame_at(self.data, position, self.end, self.header.key)


@dataclass
class _Appender:
    """This process's descriptor on the segment it appends to."""

    descriptor: int
    path: Path
    key: bytes
    pid: int = field(default_factory=os.getpid)


class _ProcessFileLock:
    """An flock on a file in the spool directory, taken by one thread of this process at a time (flock
    is per open file, which this process's threads would share)."""

    def __init__(self, path: Path):
        self._path = path
        self.threads = threading.Lock()  # this process's threads, one at a time
        self._descriptor: int | None = None
        self._owner_pid = 0

    @contextlib.contextmanager
    def held(self, *, wait: bool = True) -> Iterator[bool]:
        """True while held; with wait=False, False at once when another process holds it."""
        if not self.threads.acquire(blocking=wait):
            yield False
            return
        try:
            descriptor = self._lock(wait)
            if descriptor is None:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(descriptor, fcntl.LOCK_UN)
        finally:
            self.threads.release()

    def _lock(self, wait: bool) -> int | None:
        """Take the flock on the file that is at the path now; its descriptor, or None when another
        process holds it (wait=False). A lock file removed from outside (a tmp cleaner, an operator) and
        made again by another process is another file: a lock on the removed one excludes nobody, so it
        is let go and the lock is taken again on the file now at the path (on the last try, a file
        replaced again and again is locked as found)."""
        for attempt in range(1, LOCK_ATTEMPTS + 1):
            if self._descriptor is not None and self._owner_pid != os.getpid():
                os.close(self._descriptor)  # inherited across fork(): the parent's flock, not ours
                self._descriptor = None
            if self._descriptor is None:
                self._descriptor = os.open(self._path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
                self._owner_pid = os.getpid()
            descriptor = self._descriptor
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return None
            if _is_at(descriptor, self._path) or attempt == LOCK_ATTEMPTS:
                return descriptor
            fcntl.flock(descriptor, fcntl.LOCK_UN)
            os.close(descriptor)
            self._descriptor = None
        raise AssertionError("unreachable")


class RequestSpool:
    def __init__(self, directory: Path, *, max_bytes: int, max_body_bytes: int):
        self.directory = directory
        self.max_bytes = max_bytes
        self.segment_bytes = max(max_bytes // SEGMENT_FRACTION, SEGMENT_MIN_BYTES)
        # No record the service writes is larger: past damage, the reader looks for none that is.
        self.largest_record = largest_record(max_body_bytes)
        self._progress_path = directory / "progress"
        self._append_lock = _ProcessFileLock(directory / "append.lock")
        self._drain_lock = _ProcessFileLock(directory / "drain.lock")
        self._appender: _Appender | None = None
        self._status = _StatusIndex()
        # Whether this process's last append failed for want of a disk that takes it, and when /readyz
        # last tried a write of its own (so that the host comes back into rotation once writes work).
        self._unwritable = False
        self._probed_at = float("-inf")

    def files(self) -> list[Path]:
        """The spool's files in the order they are drained: earlier versions' one file, then the
        segments, oldest first."""
        try:
            names = os.listdir(self.directory)
        except (FileNotFoundError, NotADirectoryError):
            return []
        numbered = sorted((number, name) for name in names if (number := _file_number(name)) is not None)
        return [self.directory / name for _, name in numbered]

    # Appending (web threads, during an outage) -----------------------------------------------------
    def append(self, spooled: SpooledRequest) -> int:
        """Write the request and fsync it; the spool's size after it. SpoolUnavailable when it is past
        the budget or cannot be written, and then nothing of it stays in the file."""
        payload = payload_of(spooled)
        frame_bytes = RECORD_HEADER_BYTES + len(payload)  # framed (its MAC made) under the key of its file
        try:
            self._make_directory()
            with self._append_lock.held():
                sizes = _sizes(self.files())
                used = sum(sizes.values())
                tail = self._tail_segment(sizes, frame_bytes)
                tail_size = sizes.get(tail, 0)
                needed = frame_bytes + (0 if tail_size >= FILE_HEADER_BYTES else FILE_HEADER_BYTES)
                if used + needed > self.max_bytes:
                    raise SpoolUnavailable(
                        "spool_full", f"{used} of {self.max_bytes} bytes used (spool_max_bytes), {needed} more needed"
                    )
                descriptor, key = self._appending_file(tail)
                record = frame(payload, key)
                size = os.fstat(descriptor).st_size
                try:
                    _write_whole(descriptor, record)
                    os.fdatasync(descriptor)
                except OSError:
                    _cut_back(descriptor, size)
                    raise
                self._unwritable = False
                return used - tail_size + size + len(record)
        except OSError as error:
            # A full disk, a quota, a directory that is gone or read-only: the request is not kept here.
            self._unwritable = True
            raise SpoolUnavailable("spool_unwritable", error.strerror or str(error)) from error

    def _tail_segment(self, sizes: dict[Path, int], frame_bytes: int) -> Path:
        """The segment the next record goes to: the newest, or a new one when the newest holds records
        and this one would take it past `segment_bytes` (there is none yet, or only earlier versions'
        files, which are never appended to)."""
        segments = [path for path in sizes if _segment_number(path.name) is not None]
        if segments:
            newest = segments[-1]
            if sizes[newest] <= FILE_HEADER_BYTES or sizes[newest] + frame_bytes <= self.segment_bytes:
                return newest
        number = (_segment_number(segments[-1].name) or 0) + 1 if segments else 1
        return self.directory / f"{SEGMENT_PREFIX}{number:012d}{SEGMENT_SUFFIX}"

    def _make_directory(self) -> None:
        """Make the spool directory and each missing level above it, one at a time, each one's entry
        synced in its parent: a directory made but not synced can vanish in a power loss, and with it
        every request spooled under it."""
        if self.directory.is_dir():
            return
        missing = []
        level = self.directory
        while not level.exists() and level != level.parent:
            missing.append(level)
            level = level.parent
        for level in reversed(missing):
            with contextlib.suppress(FileExistsError):  # another process made it meanwhile
                level.mkdir()
            _sync_directory(level.parent)

    def _appending_file(self, path: Path) -> tuple[int, bytes]:
        """This process's descriptor on the segment at `path` (made, with its header, if there is none),
        and the segment's key, taken under the append lock. A descriptor on another file is let go (the
        drainer removed the file it had open, or another process began a newer segment)."""
        appender = self._appender
        if appender is not None and appender.pid == os.getpid() and _is_at(appender.descriptor, path):
            return appender.descriptor, appender.key
        self._close_appender()
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        try:
            key = self._begin_file(descriptor)
        except BaseException:
            os.close(descriptor)
            raise
        if key is None:
            # Not a spool file of this format (nothing of ours writes one under this name): kept for
            # operators, never overwritten.
            os.close(descriptor)
            self._set_aside_file(path)
            return self._appending_file(path)
        self._appender = _Appender(descriptor, path, key)
        return descriptor, key

    def _begin_file(self, descriptor: int) -> bytes | None:
        """Write the header of a new spool file, with a key drawn for it (or of one whose header a crash
        cut off, before any record could follow it); the file's key, None when the file is no spool file
        this version appends to."""
        header = read_header(os.pread(descriptor, FILE_HEADER_BYTES, 0))
        if header is not None:
            return header.key
        if os.fstat(descriptor).st_size >= FILE_HEADER_BYTES:
            return None
        self._make_progress_file()
        os.ftruncate(descriptor, 0)
        key = secrets.token_bytes(KEY_BYTES)
        _write_whole(descriptor, file_header(secrets.token_bytes(GENERATION_BYTES), key))
        os.fdatasync(descriptor)
        _sync_directory(self.directory)
        return key

    def _close_appender(self) -> None:
        if self._appender is not None:
            # After fork() the descriptor is the parent's copy: closing this process's copy is right too.
            with contextlib.suppress(OSError):
                os.close(self._appender.descriptor)
            self._appender = None

    def release_removed_files(self) -> None:
        """Let go of this process's descriptor on a spool file the drainer (of any process) has removed,
        so that the volume gets its space back: done at the next append, and by the drainer thread every
        second in case no append comes."""
        appender = self._appender
        if appender is None or _is_at(appender.descriptor, appender.path):  # the usual cases, no lock
            return
        # The descriptor is this process's own: the append lock's hold on this process's threads is all
        # it takes (not its flock, which needs the directory, perhaps removed with everything in it).
        with self._append_lock.threads:
            appender = self._appender
            if appender is not None and not _is_at(appender.descriptor, appender.path):
                self._close_appender()

    def _make_progress_file(self) -> None:
        """Made whole before the first record is written, so that the drainer only ever overwrites it in
        place: noting progress then needs no new space, even when the records have filled the disk. It is
        written under another name and renamed into place, so that it is never found short; one found
        short (left so by an earlier version, by a crash or ENOSPC) is made again. Under the append lock."""
        if self._progress_complete():
            return
        temporary = self.directory / "progress.tmp"
        try:
            _write_file(temporary, bytes(_PROGRESS.size))  # no generation: reads as no progress
            os.replace(temporary, self._progress_path)
        except OSError:
            with contextlib.suppress(OSError):
                temporary.unlink()
            raise
        _sync_directory(self.directory)

    def _progress_complete(self) -> bool:
        try:
            return os.stat(self._progress_path).st_size >= _PROGRESS.size
        except FileNotFoundError:
            return False

    # Reading and draining (the drainer) ----------------------------------------------------------------
    @contextlib.contextmanager
    def drain_turn(self) -> Iterator[bool]:
        """True for the one drainer at work; False when another process (or thread) drains."""
        with self._drain_lock.held(wait=False) as mine:
            yield mine

    @contextlib.contextmanager
    def view(self, path: Path) -> Iterator[SpoolView | None]:
        """The spool file at `path` up to where complete writes end (read while no writer is appending),
        or None when there is no such file or it has no header (see `clear_headless`)."""
        if not path.exists():
            yield None
            return
        with self._append_lock.held():
            try:
                descriptor = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                descriptor = None
            end = os.fstat(descriptor).st_size if descriptor is not None else 0
        if descriptor is None:
            yield None
            return
        try:
            header = read_header(os.pread(descriptor, FILE_HEADER_BYTES, 0))
            if header is None or end < header.size:
                yield None
                return
            with mmap.mmap(descriptor, end, access=mmap.ACCESS_READ) as data:
                yield SpoolView(path, header, end, data)
        finally:
            os.close(descriptor)

    def clear_headless(self, path: Path) -> None:
        """A spool file without a whole header (`view` gave None) holds no request (a record follows a
        header written and synced): one a crash cut off while it was made is removed, so that the files
        after it drain; one that is no spool file at all is set aside for operators. Under the append
        lock, so that a writer making it now is not disturbed (it writes the header under the lock)."""
        with self._append_lock.held():
            try:
                with open(path, "rb") as handle:
                    header = handle.read(FILE_HEADER_BYTES)
            except FileNotFoundError:
                return
            if read_header(header) is not None:
                return  # whole by now
            if not header_cut_off(header):
                self._set_aside_file(path)
                return
            os.unlink(path)
            _sync_directory(self.directory)

    def _recorded_progress(self) -> tuple[bytes, int] | None:
        """The progress file's generation and offset; None when it records none (missing, short, or a
        write a crash cut off)."""
        try:
            with open(self._progress_path, "rb") as handle:
                packed = handle.read(_PROGRESS.size)
            recorded, offset, checksum = _PROGRESS.unpack(packed)
        except (FileNotFoundError, struct.error):
            return None
        if zlib.crc32(packed[:-4]) != checksum:
            return None
        return recorded, offset

    def drained_to(self, view: SpoolView) -> int:
        """Where the drainer goes on in the file of `view` (its start when it has not begun). No progress
        recorded: everything is stored again, and the intake stores nothing twice."""
        recorded = self._recorded_progress()
        if recorded is None or recorded[0] != view.generation:
            return view.start
        return max(recorded[1], view.start)

    def mark_drained(self, generation: bytes, offset: int) -> None:
        """Durably: the drainer has stored everything before `offset` in the file of `generation`."""
        if not self._progress_complete():
            with self._append_lock.held():
                self._make_progress_file()
        packed = generation + struct.pack(">Q", offset)
        descriptor = os.open(self._progress_path, os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.pwrite(descriptor, packed + struct.pack(">I", zlib.crc32(packed)), 0)
            os.fdatasync(descriptor)
        finally:
            os.close(descriptor)

    def set_aside(self, view: SpoolView, damage: Damage) -> Path | None:
        """Keep the bytes of `damage` under damaged/ (fsynced), for operators; None when they cannot be
        written (a full disk). The drainer decides what that means: damaged bytes were never an
        acknowledged request and are passed anyway; a record this version cannot read was, and waits."""
        directory = self.directory / "damaged"
        path = directory / f"{view.generation.hex()}-{damage.offset}.bin"
        try:
            self._make_damaged_directory()
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

    def _make_damaged_directory(self) -> Path:
        directory = self.directory / "damaged"
        if not directory.is_dir():
            with contextlib.suppress(FileExistsError):
                directory.mkdir()
            _sync_directory(self.directory)  # its entry, as for any directory made
        return directory

    def _set_aside_file(self, path: Path) -> None:
        directory = self._make_damaged_directory()
        os.rename(path, directory / f"unreadable-{datetime.now(UTC):%Y%m%dT%H%M%S%f}.spool")
        _sync_directory(directory)
        _sync_directory(self.directory)
        log(logger, "spool_file_set_aside", logging.ERROR, directory=str(directory))

    def retire(self, view: SpoolView) -> bool:
        """Remove the spool file of `view` once everything in it is stored; False when a request was
        appended since the view was taken (the drainer goes on with it). This process's descriptor on it
        is let go at once; other processes let go of theirs within a second (`release_removed_files`)."""
        with self._append_lock.held():
            try:
                with open(view.path, "rb") as handle:
                    header = handle.read(FILE_HEADER_BYTES)
                    size = os.fstat(handle.fileno()).st_size
            except FileNotFoundError:
                return True
            found = read_header(header)
            if found is None or found.generation != view.generation or size != view.end:
                return False
            os.unlink(view.path)
            _sync_directory(self.directory)
            appender = self._appender
            if appender is not None and appender.path == view.path and not _is_at(appender.descriptor, view.path):
                self._close_appender()
        return True

    # Reporting ---------------------------------------------------------------------------------------
    def status(self) -> SpoolStatus:
        """Depth, size, the oldest waiting request's arrival time, and whether a request like the largest
        in the spool would still be taken: within the budget, and a spool directory that can be written
        with room and a free inode for it, and (after an append failed) a write that works again. The
        gauges of /metrics are set from it."""
        with self._status.lock:
            depth, size, oldest, largest = self._status.refresh(self)
        room_needed = max(largest, TYPICAL_RECORD_BYTES) + FILE_HEADER_BYTES  # perhaps in a new segment
        accepting = (
            size + room_needed <= self.max_bytes and _takes_files(self.directory, room_needed) and self._writes_work()
        )
        status = SpoolStatus(depth, size, self.max_bytes, oldest, accepting)
        metrics.observe_spool(status.depth, status.bytes, status.oldest_age_seconds())
        return status

    def _writes_work(self) -> bool:
        """False while this process's last append failed for want of a disk that takes it (EIO, a quota,
        anything statvfs does not show), until a write of /readyz's own works again: without that, a host
        out of rotation would never get the request that shows it can spool again."""
        if not self._unwritable:
            return True
        if time.monotonic() - self._probed_at < PROBE_INTERVAL_SECONDS:
            return False
        self._probed_at = time.monotonic()
        try:
            self._make_directory()
            with self._append_lock.held():
                _write_file(self.directory / "probe.tmp", bytes(TYPICAL_RECORD_BYTES))
                os.unlink(self.directory / "probe.tmp")
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(self.directory / "probe.tmp")
            return False
        self._unwritable = False
        return True

    def report(self) -> dict:
        """The status for /readyz."""
        return self.status().as_json()


@dataclass
class _FileIndex:
    """Where each record of one spool file begins, read once per record (the next status reads only
    what was appended since): 8 bytes a record, so that a spool of a million requests costs each process
    8 MB, not the requests themselves."""

    scanned_to: int = 0
    largest: int = 0
    offsets: array = field(default_factory=lambda: array("q"))

    def extend(self, view: SpoolView, largest_record: int) -> None:
        for item in view.scan(max(self.scanned_to, view.start), largest_record):
            if isinstance(item, Frame):
                self.offsets.append(item.offset)
                self.largest = max(self.largest, item.end - item.offset)
        self.scanned_to = max(self.scanned_to, view.end)


class _StatusIndex:
    """The spool's files' indexes (by generation), for its status."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self._files: dict[bytes, _FileIndex] = {}

    def refresh(self, spool: RequestSpool) -> tuple[int, int, datetime | None, int]:
        """Depth, size, the oldest waiting request's arrival time, and the largest record's size."""
        depth, size, oldest, largest = 0, 0, None, 0
        indexes: dict[bytes, _FileIndex] = {}
        for path in spool.files():
            with spool.view(path) as view:
                if view is None:
                    continue
                index = indexes[view.generation] = self._files.get(view.generation) or _FileIndex()
                index.extend(view, spool.largest_record)
                first_waiting = bisect.bisect_left(index.offsets, spool.drained_to(view))
                waiting = len(index.offsets) - first_waiting
                if waiting and not depth:
                    # The first waiting record's: records are in the order they were acknowledged, which
                    # is the order of arrival but for requests that waited for a database time-out.
                    first = view.frame_at(index.offsets[first_waiting])
                    oldest = arrival_time(first.payload) if first else None
                depth, size, largest = depth + waiting, size + view.end, max(largest, index.largest)
        self._files = indexes  # files removed since are forgotten
        return depth, size, oldest, largest


# A spool file's kind, the first part of its place in the drain order.
_LEGACY, _V1_SEGMENT, _OURS = 0, 1, 2


def _file_number(name: str) -> tuple[int, int] | None:
    """A spool file's place in the drain order: its kind (earlier versions' one file, their segments,
    this version's), then its number; None for other files."""
    if name == LEGACY_FILE:
        return _LEGACY, 0
    for kind, prefix in ((_OURS, SEGMENT_PREFIX), (_V1_SEGMENT, SEGMENT_PREFIX_V1)):
        number = name.removeprefix(prefix).removesuffix(SEGMENT_SUFFIX)
        if name.startswith(prefix) and name.endswith(SEGMENT_SUFFIX) and number.isdigit():
            return kind, int(number)
    return None


def _segment_number(name: str) -> int | None:
    """The number of a segment this version appends to (None: another file)."""
    place = _file_number(name)
    return place[1] if place is not None and place[0] == _OURS else None


def _sizes(paths: list[Path]) -> dict[Path, int]:
    """The files' sizes, in their order (a file removed meanwhile is left out)."""
    sizes = {}
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            sizes[path] = os.stat(path).st_size
    return sizes


def _is_at(descriptor: int, path: Path) -> bool:
    """Whether the open file is (still) the one at `path`: not removed, nor replaced by another."""
    try:
        held, current = os.fstat(descriptor), os.stat(path)
    except FileNotFoundError:
        return False
    return (held.st_dev, held.st_ino) == (current.st_dev, current.st_ino)


def _takes_files(directory: Path, room_needed: int) -> bool:
    """Whether files can be written in the spool directory (or the directory made where it is missing):
    a directory, writable, on a volume that is not read-only, with `room_needed` bytes and an inode
    free for an unprivileged writer."""
    path = directory
    while not path.exists() and path != path.parent:
        path = path.parent
    if not path.is_dir() or not os.access(path, os.W_OK | os.X_OK):
        return False  # a file where the directory should be, or a read-only volume (EROFS)
    try:
        stats = os.statvfs(path)
    except OSError:
        return False
    if stats.f_flag & os.ST_RDONLY:
        return False
    # A volume that counts no inodes (f_files 0, e.g. btrfs) makes them as it needs.
    inodes_free = stats.f_files == 0 or stats.f_favail > 0
    return inodes_free and stats.f_bavail * stats.f_frsize >= room_needed


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
