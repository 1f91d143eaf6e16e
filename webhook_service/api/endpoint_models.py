"""The endpoints API's parameters, request bodies and answers (api/endpoints.py), as pydantic models:
the request models validate (so the OpenAPI document and the checks cannot disagree), the answer models
document (the JSON is made by delivery/endpoints.py and delivery/history.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    RootModel,
    StrictBool,
    StrictStr,
    WithJsonSchema,
    WrapValidator,
    model_validator,
)
from pydantic.json_schema import SkipJsonSchema
from pydantic_core import PydanticCustomError

from webhook_service.api.parameters import ascii_digits, refused_as
from webhook_service.api.read_params import TIME_EXAMPLE, TIME_SCHEMA, Cursor, moment
from webhook_service.database import feed
from webhook_service.database.tables import storable

MAX_URL_LENGTH = 2048
MAX_DESCRIPTION_LENGTH = 1024
MAX_RATE_PER_SECOND = 10_000
MAX_REPLAY_EVENT_IDS = 1000
DEFAULT_ATTEMPTS = 50
MAX_ATTEMPTS_PAGE = 200

_FIELD = "invalid_field"
_EVENT_TYPES = ", ".join(feed.TYPES)
EventType = Literal[feed.TYPES]  # type: ignore[valid-type]
EventId = Annotated[StrictStr, Field(pattern=r"^[0-9]{1,18}$", description="A feed event's id.")]


def _worded(message: str) -> WrapValidator:
    """A field whose refusal is answered with `message` (pydantic's own words are not the API's)."""

    def validate(value: Any, handler: Any) -> Any:
        try:
            return handler(value)
        except ValueError:
            raise PydanticCustomError(_FIELD, "{message}", {"message": message}) from None

    return WrapValidator(validate)


def _event_types(value: Any, handler: Any) -> Any:
    try:
        return handler(value)
    except ValueError:
        unknown = [v for v in value if v not in feed.TYPES] if isinstance(value, list) else []
        message = (
            f"eventTypes: unknown event type {str(unknown[0])[:64]!r}; use {_EVENT_TYPES}"
            if unknown
            else f"eventTypes: expected a list of event types ({_EVENT_TYPES})"
        )
        raise PydanticCustomError(_FIELD, "{message}", {"message": message}) from None


def _storable(field: str) -> WrapValidator:
    """Text the database can keep: PostgreSQL's text refuses a NUL, and the insert failed with a 500.
    Refused rather than replaced, so what is stored is what was sent; checked before the field's other
    checks, which refused a lone surrogate in words that did not say why."""

    def validate(value: Any, handler: Any) -> Any:
        if isinstance(value, str) and storable(value) != value:
            message = f"{field}: must not contain NUL characters (\\u0000) or lone surrogates (\\ud800-\\udfff)"
            raise PydanticCustomError(_FIELD, "{message}", {"message": message})
        return handler(value)

    return WrapValidator(validate)


Url = Annotated[
    StrictStr,
    Field(min_length=1, max_length=MAX_URL_LENGTH, description="https (unless the service allows http)."),
    _worded(f"url: expected an absolute http(s) URL of at most {MAX_URL_LENGTH} characters"),
    _storable("url"),
]
EventTypes = Annotated[
    list[EventType],
    Field(max_length=len(feed.TYPES), description="The event types to deliver; all of them when empty or left out."),
    WrapValidator(_event_types),
]
Description = Annotated[
    StrictStr | None,
    Field(max_length=MAX_DESCRIPTION_LENGTH),
    _worded(f"description: expected text of at most {MAX_DESCRIPTION_LENGTH} characters, or null"),
    _storable("description"),
]


def _whole_number(value: Any) -> Any:
    # A JSON Schema integer is any number without a fraction: 5.0 is one; true and "5" are not.
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError("not a whole number")
    return value


RatePerSecond = Annotated[
    Annotated[int, Field(ge=1, le=MAX_RATE_PER_SECOND), BeforeValidator(_whole_number)] | None,
    Field(description="At most this many deliveries a second; null: no limit."),
    _worded(f"rateLimitPerSecond: expected an integer from 1 to {MAX_RATE_PER_SECOND}, or null"),
]


class _Body(BaseModel):
    # Unknown fields are refused: a misspelt field silently ignored would leave a setting unchanged.
    model_config = ConfigDict(extra="forbid", frozen=True)


class EndpointCreate(_Body):
    url: Url
    eventTypes: EventTypes = []
    description: Description = None
    rateLimitPerSecond: RatePerSecond = None


# The fields of an update that have no "none": a null for them is refused (EndpointUpdate).
_NOT_CLEARED = ("url", "eventTypes", "enabled")


class EndpointUpdate(_Body):
    """Only the fields given change; null clears description and rateLimitPerSecond (the others have no
    null)."""

    url: Url | SkipJsonSchema[None] = None
    eventTypes: EventTypes | SkipJsonSchema[None] = None
    description: Description = None
    enabled: Annotated[StrictBool, _worded("enabled: expected true or false")] | SkipJsonSchema[None] = None
    rateLimitPerSecond: RatePerSecond = None

    @model_validator(mode="before")
    @classmethod
    def _no_null_where_nothing_is_cleared(cls, data: Any) -> Any:
        # Left out, these stay as they are; they have nothing a null could clear them to, and the document
        # gives them no null. Read as "unchanged", a null was accepted where the document forbids it.
        if isinstance(data, dict):
            for field in _NOT_CLEARED:
                if field in data and data[field] is None:
                    message = f"{field}: null is not a value of this field; leave it out to keep the current one"
                    raise PydanticCustomError(_FIELD, "{message}", {"message": message})
        return data


class ReplaySince(_Body):
    since: Annotated[
        datetime,
        BeforeValidator(moment),
        _worded(f"since: expected an RFC 3339 time such as {TIME_EXAMPLE}, or unix seconds"),
        WithJsonSchema(TIME_SCHEMA),
    ] = Field(description="Every event (of the endpoint's types) at or after this time.")


class ReplayEvents(_Body):
    eventIds: Annotated[
        list[EventId],
        Field(min_length=1, max_length=MAX_REPLAY_EVENT_IDS),
        _worded(f"eventIds: expected a list of 1 to {MAX_REPLAY_EVENT_IDS} event ids (digits, as the feed gives them)"),
    ] = Field(description="These events.")


class ReplayRequest(RootModel[ReplaySince | ReplayEvents]):
    """Exactly one of `since` and `eventIds`."""


class EndpointPath(BaseModel):
    model_config = ConfigDict(frozen=True)

    endpoint_id: str = Field(alias="endpointId")


class AttemptQuery(BaseModel):
    model_config = ConfigDict(frozen=True)

    limit: Annotated[
        int,
        Field(ge=1, le=MAX_ATTEMPTS_PAGE),
        ascii_digits(9),
        refused_as(lambda _: f"limit: expected an integer from 1 to {MAX_ATTEMPTS_PAGE}"),
    ] = DEFAULT_ATTEMPTS
    cursor: Annotated[Cursor | SkipJsonSchema[None], refused_as(lambda _: "cursor: not a cursor this API returned")] = (
        Field(None, description="The `nextCursor` of the previous page.")
    )
    event_id: Annotated[
        Annotated[str, Field(pattern=r"^[0-9]{1,18}$")] | SkipJsonSchema[None],
        refused_as(lambda _: "eventId: expected a feed event's id (digits)"),
    ] = Field(None, alias="eventId", description="Only the attempts of this event.")


# Answers ------------------------------------------------------------------------------------------


class _Answer(BaseModel):
    model_config = ConfigDict(frozen=True)


class Endpoint(_Answer):
    id: str
    url: str
    eventTypes: list[EventType] = Field(description="Empty: every event type.")
    description: str | None
    enabled: bool
    rateLimitPerSecond: int | None
    managedBy: Literal["api", "configuration"] = Field(
        description="Endpoints declared in the configuration cannot be changed through the API."
    )
    name: str | None = Field(description="Its name in the configuration; null for the API's.")
    createdAt: datetime
    updatedAt: datetime
    failingSince: datetime | None = Field(description="When the current run of failed attempts began.")
    disabledAt: datetime | None
    disabledReason: str | None


class EndpointWithSecret(Endpoint):
    secret: str = Field(description="The Standard Webhooks secret (whsec_...), shown only here.")


class RotatedEndpoint(EndpointWithSecret):
    previousSecretExpiresAt: datetime = Field(description="Until then, deliveries carry both signatures.")


class EndpointList(_Answer):
    endpoints: list[Endpoint]


class Attempt(_Answer):
    id: str
    eventId: str
    attempt: int = Field(description="1 for the first attempt of the event to this endpoint.")
    attemptedAt: datetime
    outcome: Literal["delivered", "retry", "failed", "disabled"]
    httpStatus: int | None = Field(description="Null when there was no answer (see errorCode).")
    errorCode: str | None = Field(description="timeout, connection_failed, ssrf_refused, dns_failed, tls_failed...")
    error: str | None
    latencyMs: int
    responseBody: str | None = Field(description="The first KiB of the answer's body.")


class AttemptPage(_Answer):
    attempts: list[Attempt]
    nextCursor: str | None = Field(description="Null on the last page.")


class ReplayResult(_Answer):
    replayed: int = Field(description="Deliveries put back to pending, due now.")
