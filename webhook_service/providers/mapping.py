"""The declarative adapter: a provider without public push documentation, or a new one, onboarded by
configuration instead of code. Everything comes from Connection.options, validated at start (a bad
option stops the service with a message naming it):

    [[connections]]
    provider = "mapping"
    name = "acme"
    secrets = ["shared-secret"]
    [connections.options]
    body_format = "auto"                      # json | form | xml | auto (by Content-Type, else sniffed)
    [connections.options.fields]              # each: one path or a list of alternatives, first present wins
    message_id = ["data.id", "id"]
    from = "data.sender"
    to = "data.recipients[]"
    text = "data.text"
    media_url = "data.media[].url"
    media_content_type = "data.media[].type"
    status = "data.state"
    [connections.options.event_kind]
    paths = ["event"]
    inbound = ["message.in"]
    status = ["message.dlr"]
    [connections.options.status_map]
    DELIVERED_TO_HANDSET = "delivered"
    [connections.options.auth]
    kind = "hmac"                             # none | token | hmac
    header = "X-Acme-Signature"

Paths. Dot-separated keys: "data.sender". `name[]` walks every element of a list ("media[].url"),
`name[2]` one element. A lone value where a list is expected counts as a list of one (a form field or
XML element that happens to occur once). A list found at the end of a path stands for its elements
("mediaUrls"). `header:Name` and `query:name` read a request header or URL query parameter instead of
the body. Fields: message_id (required to be present in every body), from, to, outbound_from,
outbound_to (addresses of outbound messages and status reports, which are about outbound messages;
default: from and to), text, subject, media_url, media_content_type, media_name, media_size, status,
error_code, error_message, occurred_at, event_id (a provider event id stable across retries, used to
deduplicate status reports), and `extra` (name -> paths: provider facts kept on the message). Media
fields are paired by position, so "media[].url" and "media[].type" describe the same attachments.
A field that holds one value (all but to, outbound_to and the media fields) and finds several, or a
table, is a 400; so is a value longer than the database keeps (FIELD_LIMITS).

Bodies as documents. JSON: the object as it is. Form: each field name is a key; a name repeated is a
list of its values, in order. XML (parsed by defusedxml: a DTD, an entity declaration or an external
reference is refused with 400 `xml_forbidden`, never expanded): the root element is the document and
its name is not part of paths (`<response><Id>7</Id></response>` gives "Id" = "7"); an element with
neither children nor attributes is its text, exactly; an element with children is a table of them;
a name repeated among siblings is a list; attributes are keys "@name" and the text beside children or
attributes is "#text" (xmltodict's convention; a field whose path ends on such an element takes its
"#text"); namespaces are dropped from names; nesting deeper than 32 levels is refused.

Event kind. With `event_kind.paths`, the value found there (compared case-insensitively) is looked up
in `inbound`, `outbound` and `status`; a value in none of them produces no event (the raw request is
still stored). Without paths, or when the body has no such value, `event_kind.rule` decides:
"status_without_text" (default): a status and neither text nor media is a status report, anything else
an inbound message; "any_status": any status makes it a status report. An outbound message that
carries a status also yields that status report.

Statuses. `status_map` (provider value -> canonical status, checked against the canonical list at
start; keys compare case-insensitively) is consulted before DEFAULT_STATUS_MAP below; anything unmapped
is `unknown`, the provider's own word kept beside it.

Auth, on top of the intake's Basic auth (connection.basic_auth):
- none: Basic auth only. A connection that lists secrets must use token or hmac (its secrets would
  otherwise prove nothing).
- token: a shared token in `query_parameter` or in `header` (optionally after a `scheme` such as
  "Bearer"), compared in constant time with each of connection.secrets. The token's parameter or header
  is redacted whenever the request is stored, so no token is ever kept in clear. (Being redacted, a
  stored request's token cannot be checked again: an operator replays such a request with --trust, as
  one authenticated by Basic auth.)
- hmac: `header` carries HMAC-`algorithm` (sha1|sha256|sha512) of the raw body (`signed_content =
  "body"`, the default), or with `signed_content = "timestamp.body"` of "{timestamp}.{raw body}" with the
  timestamp from `timestamp_header` (required then: unix seconds, within 300 s or the connection's
  timestamp_tolerance_seconds), `encoding` hex|base64, an optional `prefix` ("sha256=") stripped when
  present.

Acknowledgement: `acknowledgement.body` and `.content_type` (default "OK", text/plain), returned by
acknowledgement_for(connection). A token's query parameter or header is redacted before the request is
stored (secret_query_params_for / secret_headers_for).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Annotated, Any, ClassVar, Literal
from xml.etree.ElementTree import Element

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from webhook_service.config.model import Connection
from webhook_service.model.events import Direction, Event, MediaRef, MessageEvent, StatusEvent
from webhook_service.model.statuses import CANONICAL, RECEIVED, canonical
from webhook_service.providers.base import ParseFailed, ProviderAdapter, VerificationFailed, WebhookRequest
from webhook_service.providers.fields import parse_time, text_or_none
from webhook_service.providers.signatures import check_timestamp, constant_time_equal, decode_base64, require_header

# Used after a connection's status_map: the canonical words themselves and SMPP receipt states.
DEFAULT_STATUS_MAP = {
    **{status: status for status in CANONICAL if status != RECEIVED},
    "cancelled": "canceled",
    "enroute": "sent",
    "delivrd": "delivered",
    "undeliv": "undelivered",
    "rejectd": "rejected",
    "acceptd": "accepted",
}

MAX_RECIPIENTS = 100
MAX_MEDIA = 20
MAX_XML_DEPTH = 32
# Longest value accepted per field (the body itself is capped by the intake).
FIELD_LIMITS = {
    "message_id": 255,
    "event_id": 255,
    "from": 64,
    "to": 64,
    "status": 64,
    "error_code": 64,
    "media_url": 4096,
    "media_content_type": 255,
    "media_name": 255,
    "occurred_at": 64,
}
JSON_TYPES = ("application/json", "text/json")
FORM_TYPES = ("application/x-www-form-urlencoded",)
XML_TYPES = ("application/xml", "text/xml")

_SEGMENT = re.compile(r"(?P<key>[^.\[\]]+)(?:\[(?P<index>\d{0,4})\])?")
_MISSING = object()
# Valid JSON escapes that no database text column accepts ("\u0000", "\ud800").
_UNSTORABLE = re.compile(r"[\x00\ud800-\udfff]")


# What a request is: a message in either direction, or a status report.
RequestKind = Literal["inbound", "outbound", "status"]


# Paths -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Step:
    key: str
    every: bool = False  # name[]
    index: int | None = None  # name[i]


@dataclass(frozen=True)
class FieldPath:
    source: Literal["body", "header", "query"]
    name: str  # the header or query parameter name
    steps: tuple[_Step, ...]


@lru_cache(maxsize=4096)
def compile_path(text: str) -> FieldPath:
    for source in ("header", "query"):
        if text.startswith(source + ":"):
            name = text[len(source) + 1 :].strip()
            if not name:
                raise ValueError(f"{text!r} names no {source}")
            return FieldPath(source, name, ())
    steps = []
    for segment in text.split("."):
        match = _SEGMENT.fullmatch(segment)
        if match is None:
            raise ValueError(f"{text!r} is not a path like 'data.media[].url' ({segment!r})")
        index = match.group("index")
        steps.append(_Step(match.group("key"), every=index == "", index=int(index) if index else None))
    return FieldPath("body", "", tuple(steps))


def _path_list(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


def _checked_paths(paths: list[str]) -> list[str]:
    for path in paths:
        compile_path(path)
    return paths


Paths = Annotated[
    list[Annotated[str, Field(min_length=1, max_length=256)]], BeforeValidator(_path_list), Field(max_length=16)
]


# Options -----------------------------------------------------------------------------------


class _Options(BaseModel):
    # An unknown option is a typo: refuse it rather than ignore a setting.
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


class FieldPaths(_Options):
    message_id: Paths = ["id", "messageId", "message_id"]
    from_: Paths = Field(default=["from", "sender"], alias="from")
    to: Paths = ["to", "recipient", "recipients"]
    outbound_from: Paths = []
    outbound_to: Paths = []
    text: Paths = ["text", "body", "message"]
    subject: Paths = ["subject"]
    media_url: Paths = ["media[].url", "attachments[].url", "mediaUrls"]
    media_content_type: Paths = [
        "media[].contentType",
        "media[].content_type",
        "attachments[].contentType",
        "attachments[].content_type",
    ]
    media_name: Paths = ["media[].name", "attachments[].name"]
    media_size: Paths = ["media[].size", "attachments[].size"]
    status: Paths = ["status"]
    error_code: Paths = ["errorCode", "error_code"]
    error_message: Paths = ["errorMessage", "error_message"]
    occurred_at: Paths = ["occurredAt", "occurred_at", "timestamp"]
    event_id: Paths = []
    extra: dict[str, Paths] = Field(default_factory=dict, max_length=32)

    @field_validator("*")
    @classmethod
    def _compiles(cls, value: Any) -> Any:
        if isinstance(value, dict):
            for paths in value.values():
                _checked_paths(paths)
            return value
        return _checked_paths(value)

    @field_validator("message_id")
    @classmethod
    def _required(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("at least one path is needed: every event names its message")
        return value


class EventKind(_Options):
    paths: Paths = []
    inbound: list[str] = []
    outbound: list[str] = []
    status: list[str] = []
    rule: Literal["status_without_text", "any_status"] = "status_without_text"

    @field_validator("paths")
    @classmethod
    def _compiles(cls, value: list[str]) -> list[str]:
        return _checked_paths(value)

    @field_validator("inbound", "outbound", "status")
    @classmethod
    def _folded(cls, values: list[str]) -> list[str]:
        return [value.strip().lower() for value in values]

    @model_validator(mode="after")
    def _values_for_paths(self) -> EventKind:
        if self.paths and not (self.inbound or self.outbound or self.status):
            raise ValueError("paths are set but no inbound, outbound or status values to compare with")
        return self

    def kind_of(self, value: str) -> RequestKind | None:
        folded = value.strip().lower()
        kinds: tuple[RequestKind, ...] = ("inbound", "outbound", "status")
        return next((kind for kind in kinds if folded in getattr(self, kind)), None)


class NoAuth(_Options):
    kind: Literal["none"]


class TokenAuth(_Options):
    kind: Literal["token"]
    query_parameter: str | None = Field(default=None, min_length=1, max_length=64)
    header: str | None = Field(default=None, min_length=1, max_length=64)
    scheme: str | None = Field(default=None, min_length=1, max_length=32)

    @model_validator(mode="after")
    def _one_place(self) -> TokenAuth:
        if (self.query_parameter is None) == (self.header is None):
            raise ValueError("set exactly one of query_parameter and header")
        if self.scheme and not self.header:
            raise ValueError("scheme applies only to a token in a header")
        return self


class HmacAuth(_Options):
    kind: Literal["hmac"]
    header: str = Field(min_length=1, max_length=64)
    algorithm: Literal["sha1", "sha256", "sha512"] = "sha256"
    encoding: Literal["hex", "base64"] = "hex"
    prefix: str = Field(default="", max_length=32)
    signed_content: Literal["body", "timestamp.body"] = "body"
    timestamp_header: str | None = Field(default=None, min_length=1, max_length=64)

    @model_validator(mode="after")
    def _timestamp(self) -> HmacAuth:
        if self.signed_content == "timestamp.body" and not self.timestamp_header:
            raise ValueError("signed_content 'timestamp.body' needs timestamp_header")
        if self.signed_content == "body" and self.timestamp_header:
            raise ValueError("timestamp_header is only signed with signed_content 'timestamp.body'")
        return self


class Acknowledgement(_Options):
    body: str = Field(default="OK", max_length=4096)
    content_type: str = Field(default="text/plain", pattern=r"^[\w.+-]+/[\w.+-]+$")


class MappingOptions(_Options):
    body_format: Literal["json", "form", "xml", "auto"] = "auto"
    fields: FieldPaths = FieldPaths()
    event_kind: EventKind = EventKind()
    status_map: dict[str, str] = {}
    auth: Annotated[NoAuth | TokenAuth | HmacAuth, Field(discriminator="kind")] = NoAuth(kind="none")
    acknowledgement: Acknowledgement = Acknowledgement()

    @field_validator("status_map")
    @classmethod
    def _canonical(cls, mapping: dict[str, str]) -> dict[str, str]:
        for provider_status, status in mapping.items():
            if status not in CANONICAL:
                raise ValueError(
                    f"{provider_status!r} maps to {status!r}, which is not a canonical status "
                    f"(one of {', '.join(sorted(CANONICAL))})"
                )
        return {provider_status.strip().lower(): status for provider_status, status in mapping.items()}


# The adapter -------------------------------------------------------------------------------


class MappingAdapter(ProviderAdapter):
    name = "mapping"
    timestamp_tolerance = 300
    options_model = MappingOptions
    acknowledgement = (Acknowledgement().body, Acknowledgement().content_type)
    # Options a preset supplies; a connection's own options win (see merge_options).
    preset: ClassVar[dict[str, Any]] = {}

    def options(self, connection: Connection) -> MappingOptions:
        return MappingOptions.model_validate(merge_options(self.preset, connection.options))

    def validate_options(self, connection: Connection) -> str | None:
        merged = connection.model_copy(update={"options": merge_options(self.preset, connection.options)})
        problem = super().validate_options(merged)
        if problem:
            return problem.replace(": Value error, ", ": ", 1)
        return _auth_problem(self.options(connection).auth, connection)

    def acknowledgement_for(self, connection: Connection) -> tuple[str, str]:
        ack = self.options(connection).acknowledgement
        return ack.body, ack.content_type

    def secret_query_params_for(self, connection: Connection) -> frozenset[str]:
        auth = self.options(connection).auth
        own = {auth.query_parameter.lower()} if isinstance(auth, TokenAuth) and auth.query_parameter else set()
        return super().secret_query_params_for(connection) | own

    def secret_headers_for(self, connection: Connection) -> frozenset[str]:
        auth = self.options(connection).auth
        own = {auth.header.lower()} if isinstance(auth, TokenAuth) and auth.header else set()
        return super().secret_headers_for(connection) | own

    # Verification -----------------------------------------------------------------------------
    def verify(self, request: WebhookRequest, connection: Connection) -> None:
        auth = self.options(connection).auth
        if isinstance(auth, TokenAuth):
            _verify_token(auth, request, connection)
        elif isinstance(auth, HmacAuth):
            _verify_hmac(auth, request, connection, self.tolerance(connection))

    # Parsing ---------------------------------------------------------------------------------
    def parse(self, request: WebhookRequest, connection: Connection) -> list[Event]:
        options = self.options(connection)
        document = _document(request, options.body_format)
        return _Extraction(options, document, request).events()


def merge_options(preset: dict[str, Any], own: dict[str, Any]) -> dict[str, Any]:
    """A connection's options over a preset's: `fields`, `fields.extra` and `status_map` merge key by
    key; any other option (auth, event_kind, acknowledgement...) is replaced whole, so that switching
    auth kind does not inherit the preset's settings for another kind."""
    merged = {**preset, **own}
    merged["status_map"] = _over(preset.get("status_map"), own.get("status_map"))
    merged["fields"] = _over(preset.get("fields"), own.get("fields"))
    if isinstance(preset.get("fields"), dict) and isinstance(own.get("fields"), dict):
        extra = _over(preset["fields"].get("extra"), own["fields"].get("extra"))
        merged["fields"] = {**merged["fields"], **({"extra": extra} if extra is not None else {})}
    return {name: value for name, value in merged.items() if value is not None}


def _over(base: Any, own: Any) -> Any:
    """`own` over `base`, key by key when both are tables; whichever exists otherwise."""
    if isinstance(base, dict) and isinstance(own, dict):
        return {**base, **own}
    return base if own is None else own


def _auth_problem(auth: NoAuth | TokenAuth | HmacAuth, connection: Connection) -> str | None:
    if isinstance(auth, NoAuth) and connection.secrets:
        return (
            "options.auth.kind: 'none' checks no secret, but the connection lists secrets; "
            "use kind 'token' or 'hmac', or remove the secrets"
        )
    if isinstance(auth, TokenAuth) and auth.header and auth.header.lower() == "authorization" and connection.basic_auth:
        return "options.auth.header: Authorization already carries the connection's basic_auth"
    return None


def _verify_token(auth: TokenAuth, request: WebhookRequest, connection: Connection) -> None:
    if auth.query_parameter:
        offered = request.query_value(auth.query_parameter)
        where = f"query parameter {auth.query_parameter}"
    else:
        header = auth.header or ""  # TokenAuth's validation makes it set when query_parameter is not
        offered = request.headers.get(header)
        where = f"header {header}"
        if offered is not None and auth.scheme:
            scheme, _, token = offered.strip().partition(" ")
            offered = token.strip() if scheme.lower() == auth.scheme.lower() else None
    if not offered:
        raise VerificationFailed("missing_token", f"no token in the {where}")
    if len(offered) > 1024:
        raise VerificationFailed("malformed_token", f"the {where} is {len(offered)} characters long")
    matches = [constant_time_equal(secret, offered) for secret in connection.secrets]
    if not any(matches):
        raise VerificationFailed("invalid_token", f"the {where} matches no configured secret")


def _verify_hmac(auth: HmacAuth, request: WebhookRequest, connection: Connection, tolerance: int) -> None:
    signature = require_header(request, auth.header, max_length=1024)
    if auth.prefix and signature[: len(auth.prefix)].lower() == auth.prefix.lower():
        signature = signature[len(auth.prefix) :]
    if auth.encoding == "hex":
        try:
            offered = bytes.fromhex(signature)
        except ValueError:
            raise VerificationFailed("malformed_signature", f"{auth.header} is not hex") from None
    else:
        offered = decode_base64(signature, auth.header)
    signed = request.body
    if auth.timestamp_header:
        timestamp = require_header(request, auth.timestamp_header, max_length=32)
        check_timestamp(timestamp, request, tolerance, auth.timestamp_header)
        signed = timestamp.encode() + b"." + request.body
    digest = getattr(hashlib, auth.algorithm)
    matches = [
        constant_time_equal(hmac.new(secret.encode(), signed, digest).digest(), offered)
        for secret in connection.secrets
    ]
    if not any(matches):
        raise VerificationFailed("invalid_signature", f"{auth.header} matches no configured secret")


# Bodies as documents -------------------------------------------------------------------------


def _document(request: WebhookRequest, body_format: str) -> dict[str, Any]:
    if not request.body.strip():
        raise ParseFailed("empty_body", "the body is empty")
    if body_format == "auto":
        body_format = _format_of(request)
    if body_format == "form":
        return _form_document(request.form())
    if body_format == "xml":
        return _xml_document(request.xml())
    return request.json_object()


def _format_of(request: WebhookRequest) -> str:
    content_type = request.content_type
    if content_type in JSON_TYPES or content_type.endswith("+json"):
        return "json"
    if content_type in FORM_TYPES:
        return "form"
    if content_type in XML_TYPES or content_type.endswith("+xml"):
        return "xml"
    # No or an unhelpful Content-Type: the first character tells.
    first = request.body.lstrip()[:1]
    return {b"{": "json", b"[": "json", b"<": "xml"}.get(first, "form")


def _form_document(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    document: dict[str, Any] = {}
    for name, value in pairs:
        if name not in document:
            document[name] = value
        elif isinstance(document[name], list):
            document[name].append(value)
        else:
            document[name] = [document[name], value]
    return document


def _xml_document(root: Element) -> dict[str, Any]:
    value = _xml_value(root, depth=0)
    return value if isinstance(value, dict) else {"#text": value}


def _xml_value(element: Element, depth: int) -> Any:
    if depth > MAX_XML_DEPTH:
        raise ParseFailed("invalid_xml", f"XML nested deeper than {MAX_XML_DEPTH} levels")
    children = list(element)
    if not children and not element.attrib:
        return element.text or ""
    table: dict[str, Any] = {f"@{_local_name(name)}": value for name, value in element.attrib.items()}
    for child in children:
        name, value = _local_name(child.tag), _xml_value(child, depth + 1)
        if name not in table:
            table[name] = value
        elif isinstance(table[name], list):
            table[name].append(value)
        else:
            table[name] = [table[name], value]
    if element.text and element.text.strip():
        table["#text"] = element.text
    return table


def _local_name(tag: Any) -> str:
    return str(tag).rsplit("}", 1)[-1]


# From a document to events --------------------------------------------------------------------


class _Extraction:
    """One request's document read through one connection's options."""

    def __init__(self, options: MappingOptions, document: dict[str, Any], request: WebhookRequest):
        self.options = options
        self.fields = options.fields
        self.document = document
        self.request = request

    def events(self) -> list[Event]:
        kind = self._kind()
        if kind is None:
            return []
        if kind == "status":
            return [self._status()]
        message = self._message("outbound" if kind == "outbound" else "inbound")
        if kind == "outbound" and self._one("status", self.fields.status):
            return [message, self._status()]
        return [message]

    def _kind(self) -> RequestKind | None:
        rule = self.options.event_kind
        if rule.paths:
            value = self._one("event_kind", rule.paths)
            if value is not None:
                return rule.kind_of(value)
        if not self._one("status", self.fields.status):
            return "inbound"
        if rule.rule == "any_status":
            return "status"
        has_content = self._one("text", self.fields.text) or self._media()
        return "inbound" if has_content else "status"

    def _message(self, direction: Direction) -> MessageEvent:
        inbound = direction == "inbound"
        return MessageEvent(
            provider_message_id=self._message_id(),
            direction=direction,
            from_=self._one("from", self.fields.from_ if inbound else self._outbound_from()),
            to=self._many("to", self.fields.to if inbound else self._outbound_to()),
            text=self._one("text", self.fields.text),
            subject=self._one("subject", self.fields.subject),
            media=self._media(),
            occurred_at=parse_time(self._one("occurred_at", self.fields.occurred_at)),
            extra={
                name: value
                for name, paths in self.fields.extra.items()
                if (value := self._one(f"extra.{name}", paths)) is not None
            },
        )

    def _status(self) -> StatusEvent:
        provider_status = self._one("status", self.fields.status)
        if provider_status is None:
            raise ParseFailed("missing_field", f"status report without a status (paths: {self.fields.status})")
        status_map = {**DEFAULT_STATUS_MAP, **self.options.status_map}
        return StatusEvent(
            provider_message_id=self._message_id(),
            status=canonical(status_map, provider_status),
            provider_status=provider_status,
            occurred_at=parse_time(self._one("occurred_at", self.fields.occurred_at)),
            error_code=self._one("error_code", self.fields.error_code),
            error_message=self._one("error_message", self.fields.error_message),
            event_id=self._one("event_id", self.fields.event_id),
            from_=self._one("from", self._outbound_from()),
            to=self._many("to", self._outbound_to()),
        )

    def _outbound_from(self) -> list[str]:
        return self.fields.outbound_from or self.fields.from_

    def _outbound_to(self) -> list[str]:
        return self.fields.outbound_to or self.fields.to

    def _message_id(self) -> str:
        value = self._one("message_id", self.fields.message_id)
        if value is None:
            raise ParseFailed("missing_field", f"no message id (paths: {self.fields.message_id})")
        return value

    def _media(self) -> tuple[MediaRef, ...]:
        urls = self._positions("media_url", self.fields.media_url)
        if not urls:
            return ()
        if sum(url is not None for url in urls) > MAX_MEDIA:
            raise ParseFailed("invalid_payload", f"more than {MAX_MEDIA} media")
        types = self._positions("media_content_type", self.fields.media_content_type)
        names = self._positions("media_name", self.fields.media_name)
        sizes = self._positions("media_size", self.fields.media_size)
        media = []
        for index, url in enumerate(urls):
            if url is None:
                continue
            media.append(
                MediaRef(
                    url=url,
                    content_type=_at(types, index),
                    name=_at(names, index),
                    size=_declared_size(_at(sizes, index)),
                )
            )
        return tuple(media)

    # Reading values --------------------------------------------------------------------------
    def _found(self, paths: list[str]) -> list[Any]:
        """The values at the first path that finds a non-empty one, by position (_MISSING where an
        element of a walked list lacks the rest of the path)."""
        for path in paths:
            values = _resolve(compile_path(path), self.document, self.request)
            if any(_present(value) for value in values):
                return values
        return []

    def _one(self, field: str, paths: list[str]) -> str | None:
        present = [value for value in self._found(paths) if _present(value)]
        if not present:
            return None
        if len(present) > 1:
            raise ParseFailed("invalid_payload", f"{field}: expected one value, found {len(present)}")
        return _scalar(field, present[0])

    def _many(self, field: str, paths: list[str]) -> tuple[str, ...]:
        values = [value for value in self._positions(field, paths) if value is not None]
        if len(values) > MAX_RECIPIENTS:
            raise ParseFailed("invalid_payload", f"{field}: more than {MAX_RECIPIENTS} values")
        return tuple(values)

    def _positions(self, field: str, paths: list[str]) -> list[str | None]:
        flattened: list[Any] = []
        for value in self._found(paths):
            flattened.extend(value if isinstance(value, list) else [value])
        if len(flattened) > 10 * MAX_RECIPIENTS:
            raise ParseFailed("invalid_payload", f"{field}: {len(flattened)} values")
        return [None if value is _MISSING else _scalar(field, value) for value in flattened]


def _resolve(path: FieldPath, document: dict[str, Any], request: WebhookRequest) -> list[Any]:
    if path.source == "header":
        value = request.headers.get(path.name)
        return [] if value is None else [value]
    if path.source == "query":
        return [value for name, value in request.query if name == path.name]
    values: list[Any] = [document]
    for step in path.steps:
        stepped: list[Any] = []
        for value in values:
            child = value.get(step.key, _MISSING) if isinstance(value, dict) else _MISSING
            if step.every or step.index is not None:
                items = child if isinstance(child, list) else [child]
                if step.index is None:
                    stepped.extend(items)
                else:
                    stepped.append(items[step.index] if step.index < len(items) else _MISSING)
            else:
                stepped.append(child)
        values = stepped
    return values


def _present(value: Any) -> bool:
    """Whether a path found something: an empty value lets the next alternative speak."""
    return value is not _MISSING and value not in (None, "", [])


def _scalar(field: str, value: Any) -> str | None:
    if isinstance(value, dict) and "#text" in value:
        value = value["#text"]  # an XML element with attributes: its text is the value
    if isinstance(value, (dict, list)):
        raise ParseFailed("invalid_payload", f"{field}: expected a single value, got {type(value).__name__}")
    text = text_or_none(value)
    if text is not None and _UNSTORABLE.search(text):
        raise ParseFailed("invalid_payload", f"{field}: contains a NUL character or an unpaired surrogate")
    limit = FIELD_LIMITS.get(field)
    if text is not None and limit is not None and len(text) > limit:
        raise ParseFailed("invalid_payload", f"{field}: {len(text)} characters (at most {limit})")
    return text


def _declared_size(text: str | None) -> int | None:
    """A declared size is only a hint (the download decides): an unreadable one is dropped."""
    if text is None or not text.isdigit() or len(text) > 15:
        return None
    return int(text)


def _at(values: list[str | None], index: int) -> str | None:
    return values[index] if index < len(values) else None
