"""Giving up on a database server that does not answer.

A server whose processes are stopped (SIGSTOP, a paused virtual machine, a storage stall) answers
nothing, and nothing else notices: its kernel still accepts connections and acknowledges every packet
and keepalive probe, so neither TCP keepalives nor tcp_user_timeout fire, and its own statement_timeout
cannot run. libpq would wait for the answer for as long as the server is stopped. The only limit that
holds in every case is the client's own, kept here: a thread that shuts down the socket of a connection
that has waited for an answer longer than its deadline. libpq then sees the connection closed, the
statement fails with OperationalError, the connection is marked broken and the pool discards it.

A statement whose COMMIT the server had already carried out when it stopped is reported failed; a
provider that is answered 503 for it retries, and the intake stores nothing twice (unique keys).
"""

from __future__ import annotations

import os
import socket
import threading
import time
from dataclasses import dataclass

# How often the watchdog looks: a deadline is enforced up to this late. Coarse on purpose, as it wakes
# this often whether or not anything waits (waking it on every statement would cost more).
TICK_SECONDS = 0.2

# Ticks with nothing begun and nothing waiting after which the thread ends (`begin` starts another). A
# thread that ticked forever outlived its engine: every `Database` disposed of (a test's, a command's, a
# worker's consumer started over) left one behind waking five times a second, and a test process had
# hundreds of them by the end of a full run, each taking the GIL from the threads at work.
IDLE_TICKS = 5


@dataclass(eq=False)  # each wait is itself, whatever its fields
class Wait:
    """One wait for the server's answer; `abandoned` once the watchdog has shut its socket down."""

    deadline: float
    descriptor: int
    inode: int  # the socket's identity, checked before shutting down: descriptor numbers are reused
    abandoned: bool = False


def socket_identity(descriptor: int) -> int:
    """What `begin` needs beside the descriptor, read once per connection."""
    return os.fstat(descriptor).st_ino


class AnswerWatchdog:
    """`begin` before a request to the server, `end` once it is answered (or failed): in between, the
    watchdog shuts the connection's socket down when `seconds` pass. Per statement it costs a lock taken
    twice, about 3 us (a context manager and an fstat per statement made it 9 us)."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self._lock = threading.Lock()
        self._waits: set[Wait] = set()
        self._begun = 0  # waits begun so far: the thread sees whether any began since its last tick
        self._thread: threading.Thread | None = None

    def begin(self, descriptor: int, inode: int) -> Wait:
        wait = Wait(time.monotonic() + self.seconds, descriptor, inode)
        with self._lock:
            # A thread does not survive fork(): a process started by forking starts its own.
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._watch, name="database-answer-watchdog", daemon=True)
                self._thread.start()
            self._waits.add(wait)
            self._begun += 1
        return wait

    def end(self, wait: Wait) -> None:
        # Under the lock: once removed, the watchdog can no longer touch the socket, which the connection
        # may close (and the system give to someone else) from here on.
        with self._lock:
            self._waits.discard(wait)

    @property
    def watching(self) -> bool:
        """Whether its thread is running (it ends once idle)."""
        with self._lock:
            return self._thread is not None and self._thread.is_alive()

    def _watch(self) -> None:
        idle_ticks, begun = 0, -1
        while True:
            time.sleep(TICK_SECONDS)
            now = time.monotonic()
            with self._lock:
                expired = [wait for wait in self._waits if now >= wait.deadline]
                for wait in expired:
                    self._waits.discard(wait)
                    wait.abandoned = _shut_down(wait)
                idle_ticks = idle_ticks + 1 if not self._waits and self._begun == begun else 0
                begun = self._begun
                # Decided under the lock that `begin` takes: a wait begun from here on starts a thread.
                if idle_ticks >= IDLE_TICKS:
                    self._thread = None
                    return


def _shut_down(wait: Wait) -> bool:
    """Shut the waiting socket down (its owner keeps the descriptor and closes it); False when the
    descriptor no longer refers to the socket the wait began on."""
    try:
        if os.fstat(wait.descriptor).st_ino != wait.inode:
            return False
        with socket.socket(fileno=os.dup(wait.descriptor)) as duplicate:
            duplicate.shutdown(socket.SHUT_RDWR)
    except OSError:
        return False
    return True
