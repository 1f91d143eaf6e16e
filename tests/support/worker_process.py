"""The real `webhook-service worker` as a test runs it: in its own session, its JSON log lines
collected as they come."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

CLI = [sys.executable, "-m", "webhook_service.cli"]


class WorkerUnderTest:
    """The real `webhook-service worker` in its own session, its log lines collected as they come."""

    def __init__(self, config: Path, *arguments: str):
        environment = dict(os.environ, WEBHOOK_SERVICE_CONFIG=str(config))
        environment.pop("PROMETHEUS_MULTIPROC_DIR", None)
        self.process = subprocess.Popen(
            [*CLI, "worker", *arguments],
            env=environment,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        self.lines: list[dict] = []
        self.not_json: list[str] = []  # lines of its stderr that were not one JSON object
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.process.stderr:
            try:
                self.lines.append(json.loads(line))
            except ValueError:
                self.not_json.append(line)
                self.lines.append({"event": line.rstrip()})

    def events(self, needle: str) -> list[dict]:
        return [line for line in self.lines if needle in str(line.get("event", ""))]

    def wait_for(self, needle: str, count: int = 1, timeout: float = 60) -> list[dict]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.events(needle)
            if len(found) >= count:
                return found
            assert self.process.poll() is None, f"the worker exited: {self.lines[-5:]}"
            time.sleep(0.05)
        raise AssertionError(f"no {count} x {needle!r} within {timeout} s: {self.lines[-5:]}")

    def children(self) -> list[int]:
        path = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        return [int(pid) for pid in path.read_text().split()]

    def stop(self, number: int = signal.SIGTERM, timeout: float = 30) -> int:
        self.process.send_signal(number)
        return self.process.wait(timeout=timeout)

    def close(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
