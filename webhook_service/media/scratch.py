"""Scratch space: the directory (`data_dir/tmp`) where downloads, uploads and re-encoded images are
written while they are checked, before the blob store takes them.

A failure to write there (a full disk, a quota, a read-only or vanished volume, an I/O error) is this
machine's passing trouble, not the media's nor the sender's. Every file and directory made here raises
ScratchSpaceUnavailable for it, which is deliberately not an OSError: the fetcher takes OSError for a
failed connection and Pillow for a corrupt image, and a full disk must not pass for either (it would be
retried as a network error, or rejected for good as an unreadable image). The attachment pipeline
retries it with backoff; the upload API answers 503.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# As open(path, "w+b") would, but never following a link to write elsewhere, nor leaking the descriptor
# into a child process (as tempfile's own files).
_NEW_FILE_FLAGS = os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC


class ScratchSpaceUnavailable(Exception):
    """Scratch space could not be written: retry later."""


def make_directory(parent: Path, prefix: str) -> Path:
    """A new private directory in `parent` for one download or upload; the caller removes it."""
    with _failures(f"making a directory in {parent.name}/"):
        return Path(tempfile.mkdtemp(prefix=prefix, dir=parent))


def create(path: Path) -> io.BufferedRandom:
    """An empty file at `path` (made, or emptied if it exists), open for writing (and reading back)."""
    with _failures(f"creating {path.name}"):
        descriptor = os.open(path, _NEW_FILE_FLAGS, 0o600)
    return _buffered(descriptor, path)


def create_unique(directory: Path, prefix: str, suffix: str) -> tuple[Path, io.BufferedRandom]:
    """A new file with a name of its own in `directory`, open for writing (and reading back)."""
    with _failures(f"creating a file in {directory.name}/"):
        descriptor, name = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=directory)
    return Path(name), _buffered(descriptor, Path(name))


def _buffered(descriptor: int, path: Path) -> io.BufferedRandom:
    try:
        return io.BufferedRandom(_ScratchFileIO(descriptor, path))
    except BaseException:
        os.close(descriptor)
        raise


class _ScratchFileIO(io.FileIO):
    """The unbuffered file under the buffer: every call that reaches the disk is made here (the buffer
    calls these methods, also when it flushes on close), so this is where its OSErrors are turned."""

    def __init__(self, descriptor: int, path: Path):
        super().__init__(descriptor, "r+")
        self._what = f"writing {path.name}"

    def write(self, data: Any, /) -> int:  # any buffer, as FileIO.write takes (typeshed's Buffer)
        with _failures(self._what):
            return super().write(data)

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        with _failures(self._what):
            return super().seek(offset, whence)

    def truncate(self, size: int | None = None) -> int:
        with _failures(self._what):
            return super().truncate(size)

    def close(self) -> None:
        with _failures(self._what):
            super().close()


@contextlib.contextmanager
def _failures(what: str) -> Iterator[None]:
    try:
        yield
    except OSError as error:
        # The step and the system's words (ENOSPC reads "No space left on device"), never a full path:
        # the reason is shown to API consumers.
        raise ScratchSpaceUnavailable(
            f"scratch space is unavailable while {what}: {error.strerror or error}"
        ) from error
