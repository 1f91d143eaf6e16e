"""Loading the settings this service runs with: the configuration's sources (file, environment), the
development defaults, and the check of every connection against the provider registry. The first step
of the composition root: settings -> runtime -> app, worker, CLI."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from webhook_service.config.development import add_development_defaults, is_development
from webhook_service.config.model import ConfigError, Settings
from webhook_service.config.sources import read_configuration, validated
from webhook_service.providers import ADAPTERS, connection_problems


def load_settings(
    path: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Read, merge and validate the configuration. Raises ConfigError with a one-line message."""
    configuration = read_configuration(path, environ, overrides)
    if is_development(configuration.data):
        add_development_defaults(configuration.data, provider_names=ADAPTERS)
    settings = validated(configuration)
    problems = connection_problems(settings.connections)
    if problems:
        raise ConfigError.listing(problems)
    return settings
