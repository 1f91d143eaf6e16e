"""gunicorn's control socket. gunicorn 27 opens one for `gunicornc` at $XDG_RUNTIME_DIR/gunicorn.ctl or
~/.gunicorn/gunicorn.ctl, one path for every gunicorn the user runs: each new server takes it over, and
the first to stop deletes it under the others. The service's gunicorn opens none, started either way
(the Procfile's `gunicorn --config ...` or `webhook-service web`), so two web processes of one user on one
machine cannot trip over each other."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import requests

from tests.fixtures.services import free_port
from tests.service.gunicorn import PROCFILE_WEB, Served, serve, stop

pytestmark = pytest.mark.slow

WEBHOOK_SERVICE_WEB = [sys.executable, "-m", "webhook_service.cli", "web"]


def test_two_web_processes_of_one_user_open_no_control_socket_and_stopping_one_leaves_the_other(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    # Without XDG_RUNTIME_DIR (a service account has no login session), gunicorn's default is under $HOME.
    environment = {name: value for name, value in os.environ.items() if name != "XDG_RUNTIME_DIR"}
    environment["HOME"] = str(home)
    started: list[Served] = []
    try:
        for number, command in enumerate((PROCFILE_WEB, WEBHOOK_SERVICE_WEB)):
            port = free_port()
            config = tmp_path / f"web-{number}.toml"
            config.write_text(f'port = {port}\ndata_dir = "{tmp_path / f"data-{number}"}"\n')
            started.append(serve(config, port, command=command, environment=environment))
        procfile, cli = started

        assert _files_under(home) == []
        stop(procfile)
        assert requests.get(f"{cli.base}/healthz", timeout=5).status_code == 200
        assert _files_under(home) == []
        assert "Control socket" not in procfile.log_tail() + cli.log_tail()
    finally:
        for served in started:
            stop(served)


def _files_under(directory: Path) -> list[str]:
    return sorted(str(path.relative_to(directory)) for path in directory.rglob("*"))
