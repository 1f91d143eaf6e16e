"""`webhook-service run` refuses what it cannot start with before it starts anything (no migration, no web,
no worker), in one line: a port out of range (click's usage error naming --port), a configuration problem
web and worker would each have found as they started (said once, not by every process), a port that
is already taken, and a directory web and worker could not make or write. Run as the real command, in a
directory of its own: were it to start, it would start web and worker."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Callable

import pytest

from tests.fixtures.services import free_port

CLI = [sys.executable, "-m", "webhook_service.cli"]


@pytest.fixture
def webhook_service(tmp_path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """The command line in an empty directory, with none of the service's variables set."""

    def run(*arguments: str) -> subprocess.CompletedProcess[str]:
        environment = {
            name: value
            for name, value in os.environ.items()
            if name not in ("WEBHOOK_SERVICE_CONFIG", "DATABASE_URL", "DATA_DIR", "HOST", "PORT")
        }
        environment.pop("PROMETHEUS_MULTIPROC_DIR", None)
        return subprocess.run(
            [*CLI, *arguments], cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=60
        )

    return run


def test_a_port_out_of_range_is_a_usage_error_naming_the_option(webhook_service, tmp_path):
    # It was blamed on "the environment variable PORT", said by web and worker both, and followed by
    # "worker exited with code 2".
    result = webhook_service("run", "--port", "99999")
    assert result.returncode == 2
    assert result.stderr.endswith("Error: Invalid value for '--port': 99999 is not in the range 1<=x<=65535.\n")
    assert "PORT" not in result.stderr and "exited" not in result.stderr
    assert os.listdir(tmp_path) == []


def test_a_configuration_file_that_is_not_there_is_said_to_be_the_options(webhook_service, tmp_path):
    result = webhook_service("--config", "missing.toml", "run")
    assert result.returncode == 2
    assert result.stderr.endswith("Error: Invalid value for '--config': File 'missing.toml' does not exist.\n")
    assert "WEBHOOK_SERVICE_CONFIG" not in result.stderr


def test_what_web_and_worker_would_refuse_as_they_start_is_said_once_before_they_start(webhook_service, tmp_path):
    # A declared endpoint the delivery rules refuse passes the configuration's own checks: each gunicorn
    # worker and the worker found it, after `run` had migrated and said it was listening.
    (tmp_path / "service.toml").write_text(f"""
port = {free_port()}
[[tenants]]
id = "t1"
[[delivery.endpoints]]
tenant = "t1"
name = "plain"
url = "http://hooks.example.com/in"
secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
""")
    result = webhook_service("--config", "service.toml", "run")
    assert result.returncode == 2
    assert result.stderr == (
        "configuration error: delivery.endpoints[0].url: Refused http://hooks.example.com/in: only https is allowed.\n"
    )
    assert result.stdout == ""
    assert os.listdir(tmp_path) == ["service.toml"]  # nothing migrated, nothing started


@pytest.mark.parametrize("taken_at", ["127.0.0.1", "0.0.0.0"])
def test_a_port_already_in_use_is_one_line_and_starts_nothing(webhook_service, tmp_path, taken_at):
    # It said it was listening (its check had reached the other program), then gunicorn logged
    # "Connection in use" for 5 s and `run` exited 1. A listener on every address takes the port on
    # loopback too, for gunicorn as for the check.
    with socket.socket() as other:
        other.bind((taken_at, 0))
        other.listen()
        port = other.getsockname()[1]
        result = webhook_service("run", "--port", str(port))
    assert result.returncode == 5
    assert result.stderr == (
        f"webhook-service: 127.0.0.1:{port} is already in use: stop what listens there or choose --port\n"
    )
    assert result.stdout == ""
    assert os.listdir(tmp_path) == []  # not migrated: no data directory


def test_a_directory_web_and_worker_could_not_make_is_one_line_before_either_starts(webhook_service, tmp_path):
    # The local store's directory under a file: every gunicorn worker and the worker printed the
    # traceback of its mkdir, after gunicorn had said it was listening, and `run` exited 3, the code
    # of a database that cannot be reached.
    (tmp_path / "a-file").write_text("")
    (tmp_path / "service.toml").write_text(f"""
port = {free_port()}
data_dir = "{tmp_path / "data"}"
[storage]
local_dir = "{tmp_path / "a-file" / "blobs"}"
""")
    result = webhook_service("--config", "service.toml", "run")
    store = tmp_path / "a-file" / "blobs"
    assert result.returncode == 6
    assert result.stderr == (
        f"webhook-service: storage.local_dir {store} cannot be used ({store / 'objects'}: Not a directory): "
        "it must be a directory the service can create and write\n"
    )
    assert result.stdout == ""  # neither started
