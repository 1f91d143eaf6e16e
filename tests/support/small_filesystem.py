"""A real volume that fills up: a tmpfs of a few pages mounted under the test's temporary directory.

Writes to it fail as on any full disk (the kernel answers ENOSPC), whatever the user: root ignores file
permissions, but not a volume's size. Mounting needs root (CAP_SYS_ADMIN); where the test may not mount,
`small_filesystem` yields False and the test says what it does instead.
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def small_filesystem(directory: Path, size_bytes: int, *, inodes: int | None = None) -> Iterator[bool]:
    """A tmpfs of `size_bytes` (rounded up to whole pages), and of `inodes` files and directories when
    given, at `directory` while in the block; True when it could be mounted."""
    directory.mkdir(parents=True, exist_ok=True)
    options = f"size={size_bytes},mode=0755" + (f",nr_inodes={inodes}" if inodes else "")
    mounted = (
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(directory)], capture_output=True, check=False
        ).returncode
        == 0
    )
    try:
        yield mounted
    finally:
        if mounted:
            # Lazy: a process the test started may still hold a file there while it is being stopped.
            subprocess.run(["umount", "--lazy", str(directory)], capture_output=True, check=False)


def fill(directory: Path) -> Path:
    """Write a file in `directory` until its volume is full; removing the file frees the space again."""
    path = directory / "filler"
    chunk = b"\0" * 4096
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        while True:
            try:
                os.write(descriptor, chunk)
            except OSError as error:
                if error.errno != errno.ENOSPC:
                    raise
                break
    finally:
        os.close(descriptor)
    return path


def remount(directory: Path, *, read_only: bool) -> None:
    """The volume mounted at `directory` read-only (writes fail with EROFS, whatever the user), or
    writable again."""
    mode = "ro" if read_only else "rw"
    subprocess.run(["mount", "-o", f"remount,{mode}", str(directory)], capture_output=True, check=True)


def use_up_inodes(directory: Path) -> list[Path]:
    """Make empty files in `directory` until its volume has no inode left; removing one frees one."""
    made = []
    while True:
        path = directory / f"inode-{len(made)}"
        try:
            path.touch()
        except OSError as error:
            if error.errno != errno.ENOSPC:
                raise
            return made
        made.append(path)
