"""`webhook-service worker` as several consumer processes, each with its share of the download threads.

Why processes: a download holds the GIL for some milliseconds of Python per file (the claim, the
outcome, the fetcher's bookkeeping), and with eight threads in one process those turns queue behind
each other while the CPUs idle. Two processes of four threads on two cores stored 5 MiB files 18-36%
faster than one of eight (bench/ingest.py); more processes than cores gained nothing.

The supervisor only starts, watches and stops its children: a child that dies is started again (after
a pause that grows while it keeps dying young), a stop signal is passed on and waited for. Only the
first child runs the periodic sweep, so it is enqueued once a minute, not once per process.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Collection
from dataclasses import dataclass

from webhook_service.config.cpus import available_cpus
from webhook_service.observability.logs import log

logger = logging.getLogger("webhook_service.worker")

# A child that ran this long before dying was healthy: the next restart waits the shortest pause again.
_HEALTHY_SECONDS = 60.0
_FIRST_RESTART_DELAY = 1.0
_MAX_RESTART_DELAY = 30.0
# After passing on a stop signal: huey finishes running downloads first (graceful), so this is long.
STOP_TIMEOUT = 90.0
_POLL_SECONDS = 0.2


def split_threads(threads: int, processes: int | None = None) -> list[int]:
    """`threads` spread over `processes` (None: one per CPU) as evenly as possible, never a process
    without a thread."""
    processes = max(1, min(processes or available_cpus(), threads))
    share, extra = divmod(threads, processes)
    return [share + (1 if index < extra else 0) for index in range(processes)]


def child_command(threads: int, periodic: bool) -> list[str]:
    command = [
        sys.executable,
        "-m",
        "webhook_service.cli",
        "worker",
        "--threads",
        str(threads),
        "--processes",
        "1",
        "--supervised",
    ]
    return command if periodic else [*command, "--no-periodic"]


def stop_when_orphaned(interval: float = 1.0) -> None:
    """In a supervised child: stop (as on SIGTERM) once the supervisor is gone, killed without the
    chance to stop its children. They are in their own process group, so nothing else would."""
    supervisor = os.getppid()

    def watch() -> None:
        while os.getppid() == supervisor:
            time.sleep(interval)
        log(logger, "worker_supervisor_gone", logging.WARNING, supervisor_pid=supervisor)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="supervisor-watch", daemon=True).start()


@dataclass
class _Child:
    index: int
    threads: int
    command: list[str]
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    restart_delay: float = _FIRST_RESTART_DELAY
    restart_at: float | None = None


class WorkerProcesses:
    """Runs one consumer process per share of threads until a stop signal, then stops them all.

    `final_exit_codes`: how a consumer ends when it could not start for a reason that starting it again
    would meet the same way (the command line's codes for a configuration or a directory it cannot use:
    cli/failures.py). The worker then stops with that code instead of restarting it every 30 s for ever."""

    def __init__(
        self, shares: list[int], *, final_exit_codes: Collection[int] = (), stop_timeout: float = STOP_TIMEOUT
    ):
        self._children = [
            _Child(index, threads, child_command(threads, periodic=index == 0)) for index, threads in enumerate(shares)
        ]
        self._final_exit_codes = frozenset(final_exit_codes)
        self._stop_timeout = stop_timeout
        self._stop_signal: int | None = None
        self._exit_code = 0

    def run(self) -> int:
        """Returns the exit code for the supervisor: 0 after a stop signal, a consumer's when it ended with
        one of `final_exit_codes`."""
        for number in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(number, self._on_signal)
        for child in self._children:
            self._start(child)
        log(
            logger,
            "worker_processes_started",
            processes=len(self._children),
            threads=[child.threads for child in self._children],
        )
        while self._stop_signal is None:
            self._watch()
            time.sleep(_POLL_SECONDS)
        self._stop_all(self._stop_signal)
        return self._exit_code

    def _on_signal(self, number: int, _frame) -> None:
        if number == signal.SIGHUP:
            # huey's own meaning: restart the workers, gracefully. Each child does that itself.
            self._signal_children(signal.SIGHUP)
        elif self._stop_signal is not None:
            self._signal_children(signal.SIGTERM)  # a second stop signal: do not wait for downloads
        else:
            self._stop_signal = number

    def _start(self, child: _Child) -> None:
        # Its own process group: a Ctrl-C in a terminal reaches the supervisor only, which passes it
        # on once (huey takes a second SIGINT during a graceful stop as "stop now").
        # A SIGHUP (huey's restart, passed on) before the child has set its handler would end it: it
        # starts with the signal ignored (which exec keeps), until huey's consumer handles it.
        hangup = signal.signal(signal.SIGHUP, signal.SIG_IGN)
        try:
            child.process = subprocess.Popen(child.command, process_group=0)
        finally:
            signal.signal(signal.SIGHUP, hangup)
        child.started_at = time.monotonic()
        child.restart_at = None

    def _watch(self) -> None:
        now = time.monotonic()
        for child in self._children:
            if child.restart_at is not None:
                if now >= child.restart_at and self._stop_signal is None:
                    self._start(child)
                continue
            process = child.process
            code = process.poll() if process is not None else None
            if process is None or code is None:
                continue
            lived = now - child.started_at
            if lived >= _HEALTHY_SECONDS:
                child.restart_delay = _FIRST_RESTART_DELAY
            # Started again, unless it could not start for a reason the next try would meet alike.
            stopping = code in self._final_exit_codes
            log(
                logger,
                "worker_process_exited",
                logging.ERROR,
                process=child.index,
                pid=process.pid,
                exit_code=code,
                ran_seconds=round(lived, 1),
                restart_in_seconds=None if stopping else child.restart_delay,
                reason="could not start, and would not again (see its line): stopping the worker" if stopping else None,
            )
            if stopping:
                self._exit_code, self._stop_signal = code, signal.SIGTERM
                return
            child.restart_at = now + child.restart_delay
            child.restart_delay = min(child.restart_delay * 2, _MAX_RESTART_DELAY)

    def _signal_children(self, number: int) -> None:
        for child in self._children:
            if child.process is not None and child.process.poll() is None:
                child.process.send_signal(number)

    def _stop_all(self, number: int) -> None:
        # SIGINT asks huey for a graceful stop (running downloads finish), SIGTERM for an immediate one
        # (their claims' leases run out and the sweep takes them up again): the children get the same.
        self._signal_children(number)
        deadline = time.monotonic() + self._stop_timeout
        for child in self._children:
            if child.process is None:
                continue
            try:
                child.process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log(
                    logger,
                    "worker_process_killed",
                    logging.WARNING,
                    process=child.index,
                    pid=child.process.pid,
                    waited_seconds=self._stop_timeout,
                )
                child.process.kill()
                child.process.wait()
