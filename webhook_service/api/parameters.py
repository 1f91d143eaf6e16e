"""Query and path parameters as pydantic models: the models that validate a request are the ones the
OpenAPI document is generated from (api/openapi.py), so the two cannot disagree.

A refused parameter is answered as the API always has: 400 with code `invalid_parameter` and a message
that starts with the parameter's name. Validators say that message themselves (`refused_as`), since
pydantic's own wording ("Input should be...") is not the API's."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, BeforeValidator, ValidationError, WrapValidator
from pydantic.json_schema import SkipJsonSchema
from pydantic_core import PydanticCustomError, PydanticUseDefault

from webhook_service.api.errors import ApiError

Model = TypeVar("Model", bound=BaseModel)

# An optional text parameter: None when not given. The document shows a string, and leaves it out of
# the required ones; null is not something a URL can say.
OptionalText = str | SkipJsonSchema[None]

# The pydantic error type of a refusal worded for the API; its message is the answer's, unchanged.
_REFUSAL = "invalid_parameter"


def validated(model: type[Model], values: Mapping[str, str]) -> Model:
    """`values` (the query string's first value of each name, or the URL's path variables) checked by
    `model`; unknown names are ignored. Raises ApiError 400 for the first refused parameter, in the
    order the model declares them."""
    try:
        return model.model_validate(dict(values))
    except ValidationError as error:
        raise ApiError(400, "invalid_parameter", _message(error.errors()[0])) from None


def refused_as(message: Callable[[str], str]) -> WrapValidator:
    """Annotated metadata for a parameter: an empty value counts as absent (the field's default), and a
    value the field's type or constraints refuse is answered with `message(value)`."""

    def validate(value: Any, handler: Callable[[Any], Any]) -> Any:
        if value == "":
            raise PydanticUseDefault()
        try:
            return handler(value)
        except ValidationError:
            raise PydanticCustomError(_REFUSAL, "{message}", {"message": message(str(value))}) from None

    return WrapValidator(validate)


def ascii_digits(max_digits: int) -> BeforeValidator:
    """Annotated metadata for a whole number written in ASCII digits, nothing else: int() and pydantic
    also take " 5", "+5" and digits of other scripts ("²", "١"). Nine digits are past any limit here and
    well below the length at which int() itself refuses. A fraction of zeros ("5.0") is taken: the
    document says integer, and JSON Schema counts 5.0 as one."""

    def validate(value: Any) -> int:
        whole, point, fraction = value.partition(".") if isinstance(value, str) else ("", "", "")
        if point and not (fraction and fraction.strip("0") == ""):
            raise ValueError("not a whole number")
        if not (whole.isascii() and whole.isdigit() and len(whole) <= max_digits):
            raise ValueError("not a whole number in ASCII digits")
        return int(whole)

    return BeforeValidator(validate)


def _message(error: Any) -> str:
    if error["type"] == _REFUSAL:
        return str(error["ctx"]["message"])
    # A field without its own wording (none should be): the parameter's name, then pydantic's words.
    return f"{error['loc'][0]}: {error['msg']}"
