"""Wake-ups between the consumer processes that share one embedded queue (one data directory).

Each consumer process binds a Unix datagram socket in `data_dir/wake/`; whoever starts or enqueues a
task sends a byte to every socket there, and each receiving process wakes its own idle threads. Without
it, the other processes would find a burst only when their own polling delay ran out, up to a second
later. A socket left by a process that died refuses datagrams and is removed by the next sender.
"""

from __future__ import annotations

import os
import socket
import threading
import uuid
from collections.abc import Callable
from pathlib import Path


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


def wake_sender() -> socket.socket:
    sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sender.setblocking(False)
    return sender


class WakeChannel:
    """This process's socket in `directory`: `on_wake` runs for every wake-up it receives, and
    wake_others() wakes every other process listening there."""

    # sun_path holds 108 bytes on Linux, with the terminating NUL.
    MAX_PATH_BYTES = 107

    def __init__(self, directory: Path, on_wake: Callable[[], None]):
        self._directory = directory
        self._path = directory / f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        if len(os.fsencode(self._path)) > self.MAX_PATH_BYTES:
            raise OSError(
                f"socket path too long for a Unix socket ({len(os.fsencode(self._path))} bytes): {self._path}"
            )
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._receiver.bind(str(self._path))
        self._sender = wake_sender()
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
