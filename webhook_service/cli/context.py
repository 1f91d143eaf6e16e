"""What the commands that touch the database or the queue start from: the validated settings and a
Runtime with logging configured, and who the audit log says acted. It loads the whole service; how
commands print lives in output.py, which the commands that only read the settings use without it."""

from __future__ import annotations

import getpass

from webhook_service.observability.logs import configure_logging
from webhook_service.runtime import Runtime
from webhook_service.settings import load_settings


def command_runtime() -> Runtime:
    settings = load_settings()
    configure_logging(settings.log_level)
    return Runtime(settings)


def cli_actor() -> str:
    """Who the audit log says acted from the command line."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no user name for this uid (a container)
        return "cli"
