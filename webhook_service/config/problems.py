"""What is wrong with a configuration, in lines an operator can act on: each names the setting (as a
dotted path, `connections[2].name`), the environment variable its value came from when it came from one,
and for an unknown key the nearest known one (`did you mean media.max_bytes?`)."""

from __future__ import annotations

import difflib
import typing
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ValidationError

from webhook_service.config.model import Settings

# A setting's place in the configuration tree: ("media", "fetch", "allow_http"), ("connections", 2, "name").
Location = tuple[str | int, ...]
# Where values came from, by location: the environment variable that set that setting (or the table
# holding it). Locations not in it came from the file or the defaults.
Origins = Mapping[Location, str]
# Where the schema refused some items of a list of tables and the others were kept to check further
# (sources.validated_sections): by the list's location, the index in the configuration of each item kept.
Places = Mapping[Location, Sequence[int]]

T = typing.TypeVar("T")


def describe(error: ValidationError, origins: Origins) -> list[str]:
    """One line per complaint of pydantic's, in its order."""
    return [_line(problem, origins) for problem in error.errors()]


def dotted(location: Sequence[str | int]) -> str:
    text = ""
    for part in location:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def numbered(items: Sequence[T], location: Location, places: Places | None = None) -> list[tuple[int, T]]:
    """Each of `items`, the list at `location`, with its index in the configuration: its own, unless the
    list kept only some of its items (`places`), for a problem found in one to name it by its place."""
    indexes = (places or {}).get(location, range(len(items)))
    return list(zip(indexes, items, strict=True))


def origin_of(location: Location, origins: Origins) -> str | None:
    """The environment variable behind the value at `location`: the one that set it, or set a table
    holding it (WEBHOOK__QUEUE='{"name": ...}')."""
    for length in range(len(location), 0, -1):
        variable = origins.get(location[:length])
        if variable is not None:
            return variable or None  # "": set by a later source that is not a variable
    return None


def keys_at(location: Sequence[str | int]) -> list[str]:
    """The setting names the schema knows inside the table at `location` ([] where it knows none: a
    value, or a free-form table such as a connection's options)."""
    model: Any = Settings
    for part in location:
        if isinstance(part, int):
            continue  # an item of a list: its model was found with the list's field
        field = model.model_fields.get(part)
        model = model_in(field.annotation) if field is not None else None
        if model is None:
            return []
    return list(model.model_fields)


def nearest_key(key: str, known: Sequence[str]) -> str | None:
    matches = difflib.get_close_matches(key.lower(), known, n=1, cutoff=0.6)
    return matches[0] if matches else None


def _line(problem: Mapping[str, Any], origins: Origins) -> str:
    location: Location = tuple(problem["loc"])
    message = str(problem["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        if message.startswith(prefix):
            message = message[len(prefix) :]
    variable = origin_of(location, origins)
    if problem["type"] == "extra_forbidden" and location:
        message = "no such setting" + _suggestion(location, variable)
    where = dotted(location)
    if variable:
        where = (
            f"{where} (from the environment variable {variable})" if where else f"the environment variable {variable}"
        )
    return f"{where}: {message}" if where else message


def _suggestion(location: Location, variable: str | None) -> str:
    key = location[-1]
    guess = nearest_key(str(key), keys_at(location[:-1])) if isinstance(key, str) else None
    if guess is None:
        return ""
    if variable and variable.upper().endswith(str(key).upper()):
        # Say it the way it was written: as the variable to set instead.
        return f"; did you mean {variable[: len(variable) - len(str(key))]}{guess.upper()}?"
    return f"; did you mean {dotted((*location[:-1], guess))}?"


def model_in(annotation: Any) -> type[BaseModel] | None:
    """The model inside `X`, `X | None` or `list[X]`."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for argument in typing.get_args(annotation):
        model = model_in(argument)
        if model is not None:
            return model
    return None
