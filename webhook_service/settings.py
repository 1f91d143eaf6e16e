"""Loading the settings this service runs with: the configuration's sources (file, environment), the
development defaults, and the check of every connection against the provider registry. The first step
of the composition root: settings -> runtime -> app, worker, CLI."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from webhook_service.config.development import add_development_defaults, is_development
from webhook_service.config.model import ConfigError, Settings
from webhook_service.config.sources import read_configuration, validated, validated_sections
from webhook_service.providers import ADAPTERS, connection_problems


def load_settings(
    path: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Read, merge and validate the configuration. Raises ConfigError with a one-line message."""
    settings, problems = checked_settings(path, environ, overrides)
    if problems:
        raise ConfigError.listing(problems)
    return settings


def checked_settings(
    path: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> tuple[Settings, list[str]]:
    """The settings and every problem the configuration's own checks find in them. Where the schema
    refuses the configuration, the settings are those of its sections that are valid on their own, so
    that the connections' checks (and `check-config`'s checks of what the service refuses only as it
    starts) still look at all they can. Raises ConfigError when the configuration cannot be read."""
    configuration = read_configuration(path, environ, overrides)
    if is_development(configuration.data):
        add_development_defaults(configuration.data, provider_names=ADAPTERS)
    try:
        settings, problems = validated(configuration), []
    except ConfigError as error:
        settings, problems = validated_sections(configuration), error.problems
    return settings, problems + connection_problems(settings.connections)
