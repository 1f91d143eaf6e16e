"""The web process as the Procfile starts it (`gunicorn --config python:webhook_service.gunicorn_config
webhook_service.wsgi:app`), configured by a TOML file, in a session of its own so that the test can signal
the master and its workers together."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import requests

from webhook_service.cli.web import GUNICORN_COMMAND

# The Procfile's web line, as `webhook-service web` and `run` start it.
PROCFILE_WEB = list(GUNICORN_COMMAND)


@dataclass
class Served:
    base: str  # http://127.0.0.1:<port>
    port: int
    process: subprocess.Popen[bytes]  # the gunicorn master
    log: Path  # its stderr (the service's JSON log lines): a file, so that a full pipe never blocks it

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]

    def workers(self, count: int, timeout: float = 30) -> list[int]:
        """The master's `count` worker processes, once it has forked them all."""
        master = self.process.pid
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            children = [int(pid) for pid in Path(f"/proc/{master}/task/{master}/children").read_text().split()]
            if len(children) >= count:
                return children
            time.sleep(0.05)
        raise AssertionError(f"gunicorn did not start {count} workers: {self.log_tail()}")


def serve(
    config: Path,
    port: int,
    *,
    timeout: float = 60,
    command: list[str] = PROCFILE_WEB,
    environment: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> Served:
    """Start gunicorn with the service configuration in `config` (which must say `port`) and wait until
    /healthz answers. Its log goes to a file beside `config`. `command` is the Procfile's unless told
    (`webhook-service web` starts the same gunicorn); `environment` replaces this process's own, `cwd` its
    working directory."""
    environment = dict(os.environ if environment is None else environment, WEBHOOK_SERVICE_CONFIG=str(config))
    environment.pop("FORWARDED_ALLOW_IPS", None)  # gunicorn's own default would trust 127.0.0.1
    environment.pop("PROMETHEUS_MULTIPROC_DIR", None)
    log = config.with_suffix(".log")
    with log.open("wb") as stderr:
        process = subprocess.Popen(
            command, env=environment, cwd=cwd, stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True
        )
    served = Served(f"http://127.0.0.1:{port}", port, process, log)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"gunicorn exited: {served.log_tail()}")
        try:
            requests.get(f"{served.base}/healthz", timeout=1)
            return served
        except requests.RequestException:
            time.sleep(0.2)
    stop(served)
    raise AssertionError("gunicorn did not start")


def stop(served: Served) -> None:
    """SIGTERM to the whole session (master and workers), then SIGKILL to whatever is left."""
    _signal_session(served, signal.SIGTERM)
    try:
        served.process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        pass
    _signal_session(served, signal.SIGKILL)  # workers a dead master left behind
    served.process.wait(timeout=10)


def _signal_session(served: Served, number: int) -> None:
    try:
        os.killpg(served.process.pid, number)
    except ProcessLookupError:
        pass  # nothing left in it
