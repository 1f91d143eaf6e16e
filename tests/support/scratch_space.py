"""Scratch space that fails as a full or vanished disk does, without filling the machine's disk.

`fill_scratch_space` makes every file created under a directory a descriptor on /dev/full, whose every
write the kernel answers with ENOSPC: the files are created where the service creates them, and each
write the service makes reaches the kernel and fails there, exactly as on a full volume. Only file
creation under that directory is redirected; everything else (the database, the blob store, sockets)
opens files as usual. `remove_scratch_directory` takes the directory itself away (a volume that is
gone), so that nothing can be made in it.
"""

from __future__ import annotations

import fnmatch
import os
import shutil
from pathlib import Path

import pytest

from tests.fixtures.services import service_unavailable

FULL_DEVICE = "/dev/full"


def fill_scratch_space(monkeypatch: pytest.MonkeyPatch, directory: Path, names: str = "*") -> None:
    """From now on, files created under `directory` whose name matches `names` cannot be written."""
    if not os.path.exists(FULL_DEVICE):
        # Linux always has it (so CI does); elsewhere the test skips on a laptop and fails under CI=true.
        service_unavailable(FULL_DEVICE, "this system has no device that answers every write with ENOSPC")
    real_open = os.open
    directory = directory.resolve()

    def open_on_a_full_disk(path, flags, mode=0o777, *, dir_fd=None):
        descriptor = real_open(path, flags, mode, dir_fd=dir_fd)
        created = Path(os.fsdecode(path))
        if flags & os.O_CREAT and created.is_relative_to(directory) and fnmatch.fnmatch(created.name, names):
            full = real_open(FULL_DEVICE, os.O_RDWR)
            os.dup2(full, descriptor, inheritable=False)
            os.close(full)
        return descriptor

    # os.open is what both tempfile.mkstemp and the service's own exclusive creation call.
    monkeypatch.setattr(os, "open", open_on_a_full_disk)


def remove_scratch_directory(directory: Path) -> None:
    """The directory gives way to a file of the same name: nothing can be created in it any more."""
    shutil.rmtree(directory)
    directory.write_bytes(b"not a directory")
