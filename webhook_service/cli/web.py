"""`web`: the HTTP service under gunicorn, and the command line that starts it (`run` starts the same)."""

from __future__ import annotations

import os
import sys

import click

from webhook_service.settings import load_settings

# gunicorn reads its settings from the service configuration (gunicorn_config.py), like the Procfile's line.
GUNICORN_COMMAND = (
    sys.executable,
    "-m",
    "gunicorn",
    "--config",
    "python:webhook_service.gunicorn_config",
    "webhook_service.wsgi:app",
)


@click.command()
def web() -> None:
    """The HTTP service under gunicorn (settings: host, port, web_workers, web_threads)."""
    load_settings()  # fail here with one line rather than in every gunicorn worker
    os.execvp(GUNICORN_COMMAND[0], list(GUNICORN_COMMAND))
