"""What stops the web or the worker as it starts, for a reason that is the operator's to fix, is one line
and an exit code, never a traceback.

A configuration the web app cannot be built from (checked only as the app is made, such as an Azure
connection string the SDK cannot read) stops gunicorn with the one-line reason. Before, each worker exited
with code 2, which gunicorn's master answers by booting another: it held the port forever, with requests
waiting for a worker that never came, and a process manager saw a server that ran. A data directory that
cannot be made stops gunicorn's master, and the worker, as each makes its metrics' directory: each printed
the traceback of its mkdir."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.fixtures.services import free_port
from tests.service.gunicorn import PROCFILE_WEB
from tests.support.worker_process import CLI

APP_LOAD_ERROR = 4  # gunicorn's exit code when a worker cannot load the app
DIRECTORY_UNUSABLE = 6  # the command line's (cli/failures.py)


def _run(command: list[str], config: Path) -> subprocess.CompletedProcess[str]:
    environment = dict(os.environ, WEBHOOK_SERVICE_CONFIG=str(config))
    environment.pop("PROMETHEUS_MULTIPROC_DIR", None)
    return subprocess.run(command, env=environment, capture_output=True, text=True, timeout=60)


def test_gunicorn_stops_with_the_reason_when_the_app_cannot_be_built(tmp_path):
    config = tmp_path / "service.toml"
    config.write_text(f"""
port = {free_port()}
data_dir = "{tmp_path / "data"}"
[storage]
backend = "azure"
[storage.azure]
container = "media"
connection_string = "not a connection string"
""")
    result = _run(PROCFILE_WEB, config)

    assert result.returncode == APP_LOAD_ERROR, result.stderr[-3000:]
    assert "configuration error: storage.azure: " in result.stderr
    assert "App failed to load" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_data_directory_that_cannot_be_made_stops_web_and_worker_with_one_line(tmp_path):
    (tmp_path / "a-file").write_text("")
    config = tmp_path / "service.toml"
    config.write_text(f'port = {free_port()}\ndata_dir = "{tmp_path / "a-file"}"\n')
    data = tmp_path / "a-file"
    for command, kind in ((PROCFILE_WEB, "web"), ([*CLI, "worker"], "worker")):
        result = _run(command, config)
        assert result.returncode == DIRECTORY_UNUSABLE, result.stderr[-3000:]
        assert result.stderr.endswith(
            f"webhook-service: data_dir {data} cannot be used ({data / 'metrics' / kind}: Not a directory): "
            "it must be a directory the service can create and write\n"
        )
        assert "Traceback" not in result.stderr
        assert "Listening at" not in result.stderr  # gunicorn's master stopped before it listened
