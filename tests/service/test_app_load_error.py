"""A configuration the web app cannot be built from (checked only as the app is made, such as an Azure
connection string the SDK cannot read) stops gunicorn with the one-line reason. Before, each worker exited
with code 2, which gunicorn's master answers by booting another: it held the port forever, with requests
waiting for a worker that never came, and a process manager saw a server that ran."""

from __future__ import annotations

import os
import subprocess

from tests.fixtures.services import free_port
from tests.service.gunicorn import PROCFILE_WEB

APP_LOAD_ERROR = 4  # gunicorn's exit code when a worker cannot load the app


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
    environment = dict(os.environ, WEBHOOK_SERVICE_CONFIG=str(config))
    environment.pop("PROMETHEUS_MULTIPROC_DIR", None)
    result = subprocess.run(PROCFILE_WEB, env=environment, capture_output=True, text=True, timeout=60)

    assert result.returncode == APP_LOAD_ERROR, result.stderr[-3000:]
    assert "configuration error: storage.azure: " in result.stderr
    assert "App failed to load" in result.stderr
