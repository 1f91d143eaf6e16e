"""Loading the settings this service runs with: the configuration's sources (file, environment), the
development defaults, and the check of every connection against the provider registry. The first step
of the composition root: settings -> runtime -> app, worker, CLI."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from webhook_service.config.development import add_development_defaults, is_development
from webhook_service.config.model import ConfigError, Settings
from webhook_service.config.problems import Places
from webhook_service.config.sources import read_configuration, validated, validated_sections
from webhook_service.providers import ADAPTERS, connection_problems


def load_settings(
    path: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Read, merge and validate the configuration. Raises ConfigError with a one-line message."""
    checked = checked_settings(path, environ, overrides)
    if checked.problems:
        raise ConfigError.listing(checked.problems)
    return checked.settings


@dataclass(frozen=True)
class CheckedSettings:
    """The settings and every problem the configuration's own checks find in them. Where the schema
    refuses the configuration, the settings are only its parts valid on their own (validated_sections),
    and `places` says where the items kept of a list that lost some stood in the configuration."""

    settings: Settings
    problems: list[str]
    places: Places


def checked_settings(
    path: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> CheckedSettings:
    """The configuration read and checked. Where the schema refuses it, the parts valid on their own are
    kept, so that the connections' checks (and `check-config`'s checks of what the service refuses only
    as it starts) still look at all they can: every connection the schema takes, whatever the schema
    finds wrong with another. Raises ConfigError when the configuration cannot be read."""
    configuration = read_configuration(path, environ, overrides)
    if is_development(configuration.data):
        add_development_defaults(configuration.data, provider_names=ADAPTERS)
    places: Places = {}
    try:
        settings, problems = validated(configuration), []
    except ConfigError as error:
        (settings, places), problems = validated_sections(configuration), error.problems
    problems += connection_problems(settings.connections, places)
    return CheckedSettings(settings, problems, places)
