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
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from webhook_service.config.model import ConfigError, Settings

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


def read_configuration(
    path: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The file, the environment and `overrides` merged into one tree, with every "env:NAME" replaced by
    the variable's value; not yet validated. Raises ConfigError with a one-line message."""
    environ = os.environ if environ is None else environ
    path = path or environ.get(CONFIG_PATH_VARIABLE) or None
    data: dict[str, Any] = {}
    if path:
        try:
            with open(path, "rb") as handle:
                data = tomllib.load(handle)
        except FileNotFoundError:
            raise ConfigError(f"{CONFIG_PATH_VARIABLE}: no such file {str(path)!r}") from None
        except tomllib.TOMLDecodeError as error:
            raise ConfigError(f"{path}: not valid TOML: {error}") from None
    _apply_environment(data, environ)
    if overrides:
        _deep_merge(data, dict(overrides))
    _resolve_env_references(data, environ, location="")
    return data


def validated(data: Mapping[str, Any]) -> Settings:
    try:
        return Settings.model_validate(data)
    except ValidationError as error:
        raise ConfigError(describe(error)) from None


def describe(error: ValidationError) -> str:
    """pydantic's first complaint as one line that names the setting: `connections[2].name: ...`."""
    first = error.errors()[0]
    location = ""
    for part in first["loc"]:
        location += f"[{part}]" if isinstance(part, int) else (f".{part}" if location else str(part))
    message = first["msg"]
    for prefix in ("Value error, ", "Assertion failed, "):
        if message.startswith(prefix):
            message = message[len(prefix) :]
    more = f" (and {error.error_count() - 1} more)" if error.error_count() > 1 else ""
    if location:
        return f"{location}: {message}{more}"
    return f"{message}{more}"


def _apply_environment(data: dict[str, Any], environ: Mapping[str, str]) -> None:
    for variable, path in ENVIRONMENT_SHORTCUTS.items():
        if environ.get(variable):
            _set_path(data, path, environ[variable])
    for variable, raw in environ.items():
        if variable.startswith(NESTED_PREFIX) and len(variable) > len(NESTED_PREFIX):
            nested = tuple(part.lower() for part in variable[len(NESTED_PREFIX) :].split("__"))
            _set_path(data, nested, _parse_env_value(raw))


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


def _resolve_env_references(node: Any, environ: Mapping[str, str], location: str) -> Any:
    """Replace every "env:NAME" string by the variable's value, in place."""
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, value in list(items):
        here = f"{location}.{key}" if isinstance(key, str) else f"{location}[{key}]"
        if isinstance(value, str) and value.startswith("env:"):
            name = value[4:]
            if name not in environ:
                raise ConfigError(f"{here.lstrip('.')}: environment variable {name} is not set")
            node[key] = environ[name]
        elif isinstance(value, (dict, list)):
            _resolve_env_references(value, environ, here)
    return node
