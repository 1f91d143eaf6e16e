"""What every command starts from: the validated settings, and for commands that touch the database or
the queue, a Runtime with logging configured."""

from __future__ import annotations

from webhook_service.config.model import Settings
from webhook_service.observability.logs import configure_logging
from webhook_service.runtime import Runtime
from webhook_service.settings import load_settings


def command_settings() -> Settings:
    return load_settings()


def command_runtime() -> Runtime:
    settings = load_settings()
    configure_logging(settings.log_level)
    return Runtime(settings)
