"""`webhook-service run` says it is listening once its own gunicorn answers, and only then; and its check
that the port is free agrees with gunicorn's bind: a port whose last connections wait out TIME_WAIT (a
service just stopped) is free for both. And a `run` stopped as it starts ends as one stopped later does."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.fixtures.services import free_port

pytestmark = pytest.mark.slow

CLI = [sys.executable, "-m", "webhook_service.cli"]


def _start_run(config: Path, *arguments: str) -> subprocess.Popen[str]:
    environment = dict(os.environ, WEBHOOK_SERVICE_CONFIG=str(config))
    environment.pop("PROMETHEUS_MULTIPROC_DIR", None)
    return subprocess.Popen(
        [*CLI, "run", *arguments],
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def _stop(process: subprocess.Popen[str]) -> tuple[str, str]:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
    try:
        return process.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        return process.communicate()


def _port_in_time_wait() -> int:
    """A loopback port that nothing listens on any more, where a server like gunicorn (SO_REUSEADDR,
    which its connections inherit: Linux lets a bind share a port with TIME_WAIT only where both set it)
    closed a connection first, so that its end waits out TIME_WAIT."""
    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port)) as client:
            accepted, _ = listener.accept()
            accepted.close()  # closed first on the listening side: that end (port) waits in TIME_WAIT
            assert client.recv(1) == b""
    return port


def test_a_port_in_time_wait_is_free_for_run_as_for_gunicorn(tmp_path):
    port = _port_in_time_wait()
    with socket.socket() as plain, pytest.raises(OSError):
        plain.bind(("127.0.0.1", port))  # without SO_REUSEADDR, as a naive check would bind
    config = tmp_path / "service.toml"
    config.write_text(f'data_dir = "{tmp_path / "data"}"\nweb_workers = 1\n[queue]\nworker_threads = 1\n')
    process = _start_run(config, "--port", str(port))
    try:
        line = process.stdout.readline()  # the first line it prints, once the service answers
        assert line.startswith(f"webhook-service listening on http://127.0.0.1:{port}  "), line
        assert requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5).json() == {"status": "ok"}
    finally:
        _, errors = _stop(process)
    assert process.returncode == 0, errors


def test_a_web_that_never_serves_is_not_said_to_listen(tmp_path):
    """gunicorn's master listens before its workers load the app: a web whose workers cannot was said to
    be listening just before it stopped. Here the console's rate limits are to be counted in a store whose
    library is not installed, which only building the web app finds (`run` checks the rest of what its
    children build before it starts them): the web worker's one line, no traceback (there was one), and
    `run` exits with the web's code."""
    config = tmp_path / "service.toml"
    config.write_text(f"""
data_dir = "{tmp_path / "data"}"
web_workers = 1
[queue]
worker_threads = 1
[console]
rate_limit_storage_url = "memcached://127.0.0.1:11211"
""")
    process = _start_run(config, "--port", str(free_port()))
    try:
        process.wait(timeout=60)
    finally:
        stdout, stderr = _stop(process)
    assert process.returncode == 4, stderr[-3000:]  # gunicorn's "App failed to load"
    assert "listening" not in stdout
    assert "configuration error: console.rate_limit_storage_url: 'pymemcache' prerequisite not available" in stderr
    assert "Traceback" not in stderr
    assert stderr.endswith("webhook-service: web exited with code 4\n")


def test_a_run_stopped_as_it_starts_ends_as_asked(tmp_path):
    """A stop before the worker has set its handlers (its imports take most of a second): `run`'s SIGINT
    ends it as a KeyboardInterrupt does, by the signal, which is the stop asked for, not a failure (before,
    `run` exited 254, the worker's -SIGINT)."""
    config = tmp_path / "service.toml"
    config.write_text(f'data_dir = "{tmp_path / "data"}"\nweb_workers = 1\n[queue]\nworker_threads = 1\n')
    process = _start_run(config, "--port", str(free_port()))
    children = Path(f"/proc/{process.pid}/task/{process.pid}/children")
    while len(children.read_text().split()) < 2:  # web and worker started, neither ready
        assert process.poll() is None, _stop(process)
        time.sleep(0.005)
    os.kill(process.pid, signal.SIGTERM)
    _, stderr = _stop(process)
    assert process.returncode == 0, stderr[-2000:]
    assert "exited with" not in stderr
