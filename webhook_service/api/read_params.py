"""The read API's parameters (api/messages.py), as the models that both validate them and document them.
Fields are declared in the order they are checked: with several bad parameters, the first one's
message is the answer's. An empty value is the same as an absent one."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema
from pydantic.json_schema import SkipJsonSchema

from webhook_service.api.parameters import OptionalText, ascii_digits, refused_as
from webhook_service.database import feed
from webhook_service.model import statuses
from webhook_service.providers.fields import parse_time

DEFAULT_PAGE = 50
MAX_PAGE = 200
DEFAULT_EVENTS = 100
MAX_EVENTS = 1000

# The `nextCursor` this API hands out: a position, in digits; 18 of them hold any 64-bit id.
Cursor = Annotated[str, Field(pattern=r"^[0-9]{1,18}$")]
_NOT_A_CURSOR = refused_as(lambda _: "cursor: not a cursor this API returned")
TIME_EXAMPLE = "2026-01-31T12:00:00Z"


# What the document says a time is, and all the API takes: an RFC 3339 date-time (JSON Schema's
# "date-time"), or unix seconds or milliseconds (above 1e11) in at most 14 digits, each of which is a time
# a datetime holds.
_DATE_TIME = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt]([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.[0-9]+)?(?:[Zz]|[+-][0-9]{2}:[0-9]{2})"
)
_UNIX_TIME = "[0-9]{1,14}"
TIME_SCHEMA = {"anyOf": [{"type": "string", "format": "date-time"}, {"type": "string", "pattern": f"^{_UNIX_TIME}$"}]}
_EARLIEST, _LATEST = datetime.min.replace(tzinfo=UTC), datetime.max.replace(tzinfo=UTC)


def moment(value: Any) -> datetime:
    """A time as this API takes one (see TIME_SCHEMA), in UTC; ValueError for anything else."""
    if not isinstance(value, str):
        raise ValueError("not a time")
    if re.fullmatch(_UNIX_TIME, value):
        moment = parse_time(value)  # the same reading as providers' unix timestamps
        if moment is None:
            raise ValueError("not a time")
        return moment
    if not _DATE_TIME.fullmatch(value):
        raise ValueError("not a time")
    # A leap second (23:59:60, valid RFC 3339) is read as the second before it: a datetime has none.
    text = value[:17] + "59" + value[19:] if value[17:19] == "60" else value
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    try:
        return parsed.astimezone(UTC)
    except OverflowError:
        # Before year 1 or after 9999 once in UTC (0001-01-01T00:00:00+05:00): as a bound, the earliest
        # or latest time there is.
        return _EARLIEST if parsed.year < 5000 else _LATEST


def _time(name: str) -> Any:
    return Annotated[
        datetime | SkipJsonSchema[None],  # type: ignore[misc]
        BeforeValidator(moment),
        refused_as(lambda _: f"{name}: expected an ISO 8601 time such as {TIME_EXAMPLE}"),
        WithJsonSchema(TIME_SCHEMA),
    ]


def _page_size(high: int) -> Any:
    return Annotated[
        int, Field(ge=1, le=high), ascii_digits(9), refused_as(lambda _: f"limit: expected an integer from 1 to {high}")
    ]


def _comma_separated(value: Any) -> Any:
    return [item for item in value.split(",") if item] if isinstance(value, str) else value


# The `type` filter as the URL carries it: event types separated by commas, empty items skipped.
_EVENT_TYPE = "(?:" + "|".join(re.escape(kind) for kind in feed.TYPES) + ")"
_EVENT_TYPES_SCHEMA = {"type": "string", "pattern": f"^{_EVENT_TYPE}?(?:,{_EVENT_TYPE}?)*$"}


def _unknown_event_type(value: str) -> str:
    unknown = sorted(set(_comma_separated(value)) - set(feed.TYPES)) or [value]
    return f"type: unknown event type {unknown[0]!r}; use {', '.join(feed.TYPES)}"


class MessageQuery(BaseModel):
    """GET /api/v1/messages: filters (all must match) and the page."""

    model_config = ConfigDict(frozen=True)

    limit: _page_size(MAX_PAGE) = DEFAULT_PAGE  # type: ignore[valid-type]
    cursor: Annotated[Cursor | SkipJsonSchema[None], _NOT_A_CURSOR] = Field(
        None, description="The `nextCursor` of the previous page."
    )
    direction: Annotated[
        Literal["inbound", "outbound"] | SkipJsonSchema[None],
        refused_as(lambda _: "direction: use inbound or outbound"),
    ] = None
    status: Annotated[
        Literal[tuple(sorted(statuses.CANONICAL))] | SkipJsonSchema[None],  # type: ignore[valid-type]
        refused_as(lambda value: f"status: unknown status {value[:32]!r}"),
    ] = None
    provider: OptionalText = None
    connection: OptionalText = None
    provider_message_id: OptionalText = Field(None, alias="providerMessageId")
    sender: OptionalText = Field(
        None, alias="from", description="Sender; phone numbers in any format are normalized to E.164."
    )
    recipient: OptionalText = Field(None, alias="to", description="A recipient; normalized like `from`.")
    since: _time("since") = Field(  # type: ignore[valid-type]
        None, description="Received at or after: an RFC 3339 time (2026-01-31T12:00:00Z) or unix seconds."
    )
    until: _time("until") = Field(  # type: ignore[valid-type]
        None, description="Received before: an RFC 3339 time or unix seconds."
    )


class EventQuery(BaseModel):
    """GET /api/v1/events: where to continue, how many, which kinds."""

    model_config = ConfigDict(frozen=True)

    after: Annotated[Cursor, _NOT_A_CURSOR] = Field("0", description="The `nextCursor` of the previous page.")
    limit: _page_size(MAX_EVENTS) = DEFAULT_EVENTS  # type: ignore[valid-type]
    # A list, comma-separated in the URL (empty items are skipped): the document says so (explode: false).
    types: Annotated[
        list[Literal[feed.TYPES]],  # type: ignore[valid-type]
        BeforeValidator(_comma_separated),
        refused_as(_unknown_event_type),
        WithJsonSchema(_EVENT_TYPES_SCHEMA),
    ] = Field(
        default_factory=list,
        alias="type",
        description=f"Event types, separated by commas ({', '.join(feed.TYPES)}); all of them when left out.",
    )


class MessagePath(BaseModel):
    model_config = ConfigDict(frozen=True)

    message_id: str = Field(alias="messageId")


class ProviderMessagePath(BaseModel):
    model_config = ConfigDict(frozen=True)

    provider: str
    provider_message_id: str = Field(alias="providerMessageId")
