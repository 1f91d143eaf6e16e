# Hand-written, not pydantic-settings: its env source reads only os.environ (no injected environ), JSON-decodes only list and table fields, drops variables naming no field, and nothing runs between its merge and validation (env: references, development defaults).
"""Where settings come from, later sources winning:

1. built-in defaults (the schema's, in `model.py`: an embedded setup under ``./data`` that needs no servers);
2. the TOML file named by ``WEBHOOK_SERVICE_CONFIG`` (or ``--config``);
3. well-known environment variables (``DATABASE_URL``, ``REDIS_URL``, ``DATA_DIR``, ``SECRET_KEY``,
   ``PUBLIC_BASE_URL``, ``HOST``, ``PORT``, ``WEBHOOK_ENV``, ``LOG_LEVEL``);
4. ``WEBHOOK__<SECTION>__<KEY>`` variables for anything else (values parsed as JSON when they parse).

Any string value may be written ``"env:NAME"`` to read a secret from the environment at start, so the
TOML file itself can be committed without secrets.
"""

from __future__ import annotations

import json
import os
import tomllib
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import TypeAdapter, ValidationError

from webhook_service.config.model import ConfigError, Settings
from webhook_service.config.problems import Location, Places, describe, dotted, keys_at, model_in

CONFIG_PATH_VARIABLE = "WEBHOOK_SERVICE_CONFIG"
# Plain environment variables that map onto one setting each (the names platforms conventionally set).
ENVIRONMENT_SHORTCUTS = {
    "DATABASE_URL": ("database_url",),
    "REDIS_URL": ("redis_url",),
    "DATA_DIR": ("data_dir",),
    "SECRET_KEY": ("secret_key",),
    "PUBLIC_BASE_URL": ("public_base_url",),
    "HOST": ("host",),
    "PORT": ("port",),
    "WEBHOOK_ENV": ("environment",),
    "LOG_LEVEL": ("log_level",),
}
NESTED_PREFIX = "WEBHOOK__"


@dataclass
class Configuration:
    """The merged configuration tree, not yet validated, and which environment variable set what."""

    data: dict[str, Any]
    # A setting's (or table's) location -> the variable that set it; "" for a value set in code.
    origins: dict[Location, str] = field(default_factory=dict)


def read_configuration(
    path: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Configuration:
    """The file, the environment and `overrides` merged into one tree, with every "env:NAME" replaced by
    the variable's value; not yet validated. Raises ConfigError with a one-line message."""
    environ = os.environ if environ is None else environ
    path = path or environ.get(CONFIG_PATH_VARIABLE) or None
    configuration = Configuration({})
    if path:
        try:
            with open(path, "rb") as handle:
                configuration.data = tomllib.load(handle)
        except FileNotFoundError:
            raise ConfigError(f"{CONFIG_PATH_VARIABLE}: no such file {str(path)!r}") from None
        except tomllib.TOMLDecodeError as error:
            raise ConfigError(f"{path}: not valid TOML: {error}") from None
    _apply_environment(configuration, environ)
    if overrides:
        _deep_merge(configuration.data, dict(overrides))
        for location in _leaves(dict(overrides), ()):
            configuration.origins[location] = ""
    _resolve_env_references(configuration, configuration.data, environ, ())
    return configuration


def validated(configuration: Configuration) -> Settings:
    try:
        return Settings.model_validate(configuration.data)
    except ValidationError as error:
        raise ConfigError.listing(describe(error, configuration.origins)) from None


def validated_sections(configuration: Configuration) -> tuple[Settings, Places]:
    """Settings made of the sections (the tables and lists of tables: `media`, `storage`, `connections`...)
    that are valid on their own, with the defaults in place of everything else: what the checks that
    need settings can still look at while validated() refuses the configuration as a whole. A list of
    tables keeps each of its items that is valid on its own (one connection's typo leaves the others to
    be checked); the Places say where each item kept stood in the configuration, so that a problem found
    in it names its entry by its place in the file. A table (`media`, `delivery`) is taken or left whole,
    once its lists of tables have lost the items they could not keep: the checks of what it holds may
    depend on any of its settings (a declared endpoint's URL on `delivery.allow_http`), and the defaults
    in place of a refused one could find problems the configuration does not have. Top-level values are
    left out: validators of the whole model check some of them (`database_url`, `log_level`), and no
    check that needs settings reads one."""
    sections: dict[str, Any] = {}
    places: dict[Location, list[int]] = {}
    for name, info in Settings.model_fields.items():
        annotation = info.annotation
        if name not in configuration.data or annotation is None or model_in(annotation) is None:
            continue
        section = _valid_part(annotation, configuration.data[name], (name,), places)
        if section is not _REFUSED:
            sections[name] = section
    return Settings.model_construct(**sections), places


# What _valid_part returns for a part it cannot take (None is a value a part can have).
_REFUSED = object()


def _valid_part(annotation: Any, value: Any, location: Location, places: dict[Location, list[int]]) -> Any:
    """`value` validated as `annotation` (a table, or a list of them), or as much of it as validated()
    leaves to check further (see validated_sections); _REFUSED when nothing. Adds to `places` where a
    list keeps only some of its items."""
    try:
        return TypeAdapter(annotation).validate_python(value)
    except ValidationError:
        pass  # validated() names its problems
    model = model_in(annotation)
    if model is None:
        return _REFUSED
    if typing.get_origin(annotation) is list:
        if not isinstance(value, list):
            return _REFUSED
        kept = {}
        for index, item in enumerate(value):
            part = _valid_part(model, item, (*location, index), places)
            if part is not _REFUSED:
                kept[index] = part
        places[location] = list(kept)
        return list(kept.values())
    if not isinstance(value, dict):
        return _REFUSED
    # A table: taken if it is valid once the lists of tables in it keep only their valid items.
    trimmed = dict(value)
    for key, info in model.model_fields.items():
        if key in value and info.annotation is not None and model_in(info.annotation) is not None:
            part = _valid_part(info.annotation, value[key], (*location, key), places)
            if part is not _REFUSED:
                trimmed[key] = part
    try:
        return TypeAdapter(annotation).validate_python(trimmed)
    except ValidationError:
        for kept_in_part in [place for place in places if place[: len(location)] == location]:
            del places[kept_in_part]  # the table is left out whole, its lists with it
        return _REFUSED


def unread_variables(environ: Mapping[str, str] | None = None) -> list[str]:
    """Warnings for environment variables that look meant for this service but that it does not read
    (WEBHOOK_MEDIA__MAX_BYTES, webhook__port...), each with the variable it reads when one fits."""
    environ = os.environ if environ is None else environ
    warnings = []
    for variable in sorted(environ):
        read = variable in ENVIRONMENT_SHORTCUTS or variable == CONFIG_PATH_VARIABLE
        read = read or (variable.startswith(NESTED_PREFIX) and len(variable) > len(NESTED_PREFIX))
        if read or not variable.upper().startswith("WEBHOOK"):
            continue
        guess = _meant_variable(variable.upper())
        hint = f"; did you mean {guess}?" if guess else f" (it reads {NESTED_PREFIX}<SECTION>__<KEY> variables)"
        warnings.append(f"the environment variable {variable} is not read by this service{hint}")
    return warnings


def _meant_variable(upper: str) -> str | None:
    """The variable an unread WEBHOOK... one was probably meant to be: the same setting, spelt right."""
    if upper in ENVIRONMENT_SHORTCUTS or upper == CONFIG_PATH_VARIABLE:
        return upper  # the right name in the wrong case
    rest = upper[len("WEBHOOK") :].lstrip("_")
    for candidate in (rest, rest.removeprefix("SERVICE_"), rest.removeprefix("S_")):
        location = tuple(part.lower() for part in candidate.split("__"))
        if all(location) and location[-1] in keys_at(location[:-1]):
            return NESTED_PREFIX + candidate
    return None


def _apply_environment(configuration: Configuration, environ: Mapping[str, str]) -> None:
    for variable, path in ENVIRONMENT_SHORTCUTS.items():
        if environ.get(variable):
            _set_path(configuration.data, path, environ[variable])
            configuration.origins[path] = variable
    for variable, raw in environ.items():
        if variable.startswith(NESTED_PREFIX) and len(variable) > len(NESTED_PREFIX):
            nested = tuple(part.lower() for part in variable[len(NESTED_PREFIX) :].split("__"))
            _set_path(configuration.data, nested, _parse_env_value(raw))
            configuration.origins[nested] = variable


def _parse_env_value(raw: str) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def _set_path(data: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    node = data
    for part in path[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"{'.'.join(path)}: cannot set inside a non-table value")
    node[path[-1]] = value


def _deep_merge(target: dict[str, Any], source: dict[str, Any]) -> None:
    for key, value in source.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _deep_merge(target[key], value)
        else:
            target[key] = value


def _leaves(tree: dict[str, Any], location: Location) -> list[Location]:
    found: list[Location] = []
    for key, value in tree.items():
        found += _leaves(value, (*location, key)) if isinstance(value, dict) else [(*location, key)]
    return found


def _resolve_env_references(
    configuration: Configuration, node: Any, environ: Mapping[str, str], location: Location
) -> None:
    """Replace every "env:NAME" string by the variable's value, in place."""
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, value in list(items):
        here = (*location, key)
        if isinstance(value, str) and value.startswith("env:"):
            name = value[4:]
            if name not in environ:
                raise ConfigError(f"{dotted(here)}: environment variable {name} is not set")
            node[key] = environ[name]
            configuration.origins[here] = name
        elif isinstance(value, (dict, list)):
            _resolve_env_references(configuration, value, environ, here)
