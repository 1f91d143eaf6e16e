"""What every provider adapter is: verify a request, parse it into canonical events, and (optionally)
say how to authenticate media downloads. Everything else (connection lookup, body limits, Basic auth,
persistence, idempotency, logging, responses) is the intake's job, done once for all providers."""

from __future__ import annotations

import abc
import base64
import binascii
import hmac
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from typing import Any, ClassVar
from urllib.parse import parse_qsl, urlsplit
from xml.etree.ElementTree import Element
from xml.etree.ElementTree import ParseError as XMLParseError

import defusedxml.ElementTree as SafeElementTree
from defusedxml import DefusedXmlException
from pydantic import BaseModel, ValidationError
from werkzeug.datastructures import Headers

from webhook_service.config.model import Connection
from webhook_service.model.credentials import Credentials
from webhook_service.model.events import Event

# Credentials that must never be stored or logged as received (adapters may add their own).
REDACTED_HEADERS = frozenset({"authorization", "cookie", "proxy-authorization"})
REDACTED_QUERY_PARAMS = frozenset({"access_token", "token", "api_key", "apikey", "password", "secret"})


class VerificationFailed(Exception):
    """The request cannot be proven genuine: answered 401, and the reason is only for operators."""

    def __init__(self, code: str, detail: str):
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


class ParseFailed(Exception):
    """The request is genuine (or unsigned) but its body cannot be understood: answered 400."""

    def __init__(self, code: str, detail: str):
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


@dataclass(frozen=True)
class WebhookRequest:
    """A provider's request as received, independent of Flask, so that the same code verifies live
    requests and operator replays of stored ones."""

    method: str
    # The URL as the provider called it (scheme, public host, path, raw query): what signatures cover.
    url: str
    headers: Headers
    body: bytes
    received_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    remote_addr: str | None = None

    @property
    def content_type(self) -> str:
        return (self.headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()

    @cached_property
    def query(self) -> list[tuple[str, str]]:
        try:
            return parse_qsl(urlsplit(self.url).query, keep_blank_values=True)
        except ValueError:  # an unparseable URL (e.g. a bad IPv6 host) has no usable query
            return []

    def query_value(self, name: str) -> str | None:
        return next((value for key, value in self.query if key == name), None)

    def text(self) -> str:
        try:
            return self.body.decode("utf-8")
        except UnicodeDecodeError as error:
            raise ParseFailed("invalid_encoding", f"body is not UTF-8 ({error.reason} at byte {error.start})") from None

    def form(self) -> list[tuple[str, str]]:
        """The body as application/x-www-form-urlencoded pairs, in order, values kept exactly."""
        text = self.text()
        try:
            return parse_qsl(text, keep_blank_values=True, strict_parsing=bool(text), max_num_fields=5000)
        except ValueError as error:
            raise ParseFailed("invalid_form", f"body is not form-encoded: {error}") from None

    def json(self) -> Any:
        text = self.text()
        try:
            return json.loads(text)
        except ValueError as error:
            raise ParseFailed("invalid_json", f"body is not JSON: {error}") from None
        except RecursionError:
            raise ParseFailed("invalid_json", "body nests JSON too deeply") from None

    def json_object(self) -> dict[str, Any]:
        data = self.json()
        if not isinstance(data, dict):
            raise ParseFailed("invalid_json", f"expected a JSON object, got {type(data).__name__}")
        return data

    def xml(self) -> Element:
        """The body as XML, refusing DTDs, entity declarations and external references (XXE and
        entity-expansion bombs never get expanded)."""
        try:
            return SafeElementTree.fromstring(self.body, forbid_dtd=True)
        except DefusedXmlException as error:
            raise ParseFailed("xml_forbidden", f"XML uses a forbidden construct ({type(error).__name__})") from None
        except XMLParseError as error:
            raise ParseFailed("invalid_xml", f"body is not XML: {error}") from None


class ProviderAdapter(abc.ABC):
    """Base class of the adapters in this package. Subclasses set `name` and implement verify/parse."""

    name: ClassVar[str]
    # Hosts that may receive the connection's media credentials when media_auth lists none.
    media_hosts: ClassVar[tuple[str, ...]] = ()
    # Default window for schemes that sign a timestamp; a connection may override it.
    timestamp_tolerance: ClassVar[int | None] = None
    # Validates Connection.options at start; None means the adapter takes no options.
    options_model: ClassVar[type[BaseModel] | None] = None
    # Query parameters that carry credentials: redacted before the request is stored or logged.
    secret_query_params: ClassVar[tuple[str, ...]] = ()
    # Answer to a stored webhook: (body, mimetype).
    acknowledgement: ClassVar[tuple[str, str]] = ("", "text/plain")

    @abc.abstractmethod
    def verify(self, request: WebhookRequest, connection: Connection) -> None:
        """Raise VerificationFailed unless the provider's own scheme proves the request genuine.
        Called only for connections that have secrets."""

    @abc.abstractmethod
    def parse(self, request: WebhookRequest, connection: Connection) -> list[Event]:
        """The canonical events the request carries; ParseFailed when it cannot be understood."""

    # Shared helpers -----------------------------------------------------------------------
    def options(self, connection: Connection) -> BaseModel | None:
        if self.options_model is None:
            return None
        return self.options_model.model_validate(connection.options)

    def validate_options(self, connection: Connection) -> str | None:
        """A one-line problem with the connection's options, or None (called at start)."""
        if self.options_model is None:
            return f"takes no options, got {sorted(connection.options)}" if connection.options else None
        try:
            self.options_model.model_validate(connection.options)
        except ValidationError as error:
            where, message = first_validation_error(error)
            return f"options.{where}: {message}" if where else f"options: {message}"
        return None

    # Per-connection answers; the class attributes are the defaults (the mapping adapter's come from
    # each connection's options).
    def acknowledgement_for(self, connection: Connection) -> tuple[str, str]:
        return self.acknowledgement

    def secret_query_params_for(self, connection: Connection) -> frozenset[str]:
        return REDACTED_QUERY_PARAMS | {name.lower() for name in self.secret_query_params}

    def secret_headers_for(self, connection: Connection) -> frozenset[str]:
        return REDACTED_HEADERS

    def tolerance(self, connection: Connection) -> int | None:
        return connection.timestamp_tolerance_seconds or self.timestamp_tolerance

    def media_credentials(self, connection: Connection, url: str) -> Credentials | None:
        """Credentials for downloading one of this connection's media URLs, restricted to the hosts
        allowed to see them (the fetcher sends them nowhere else, and drops them on a cross-host
        redirect). Adapters whose provider needs more (Twilio) override this."""
        auth = connection.media_auth
        if auth is None:
            return None
        hosts = frozenset(auth.hosts or self.media_hosts)
        if not hosts:
            return None  # credentials with no host allowed to receive them are never sent
        if auth.kind == "basic":
            token = base64.b64encode(f"{auth.username}:{auth.password}".encode()).decode()
            headers = {"Authorization": f"Basic {token}"}
        else:
            headers = {auth.header: auth.value}
        return Credentials(headers=headers, hosts=hosts)


# Helpers for adapters ----------------------------------------------------------------------


def first_validation_error(error: ValidationError) -> tuple[str, str]:
    """Where and what pydantic's first complaint is, worded for an operator."""
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"])
    return where, first["msg"].removeprefix("Value error, ")


def invalid_payload(error: ValidationError) -> ParseFailed:
    """A body that parsed but does not have the provider's shape."""
    where, message = first_validation_error(error)
    return ParseFailed("invalid_payload", f"{where or 'body'}: {message}")


def constant_time_equal(expected: bytes | str, received: bytes | str) -> bool:
    if isinstance(expected, str):
        expected = expected.encode()
    if isinstance(received, str):
        received = received.encode("utf-8", "surrogateescape")
    return hmac.compare_digest(expected, received)


def require_header(request: WebhookRequest, name: str, max_length: int = 1024) -> str:
    value = request.headers.get(name)
    if not value:
        raise VerificationFailed("missing_signature", f"header {name} is missing")
    if len(value) > max_length:
        raise VerificationFailed("malformed_signature", f"header {name} is {len(value)} characters long")
    return value.strip()


def decode_base64(value: str, what: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise VerificationFailed("malformed_signature", f"{what} is not valid base64") from None


def check_timestamp(value: str, request: WebhookRequest, tolerance: int, what: str = "timestamp") -> int:
    """The signed unix timestamp, if within `tolerance` seconds of when the request arrived (both ways:
    a timestamp from the future is as suspicious as a stale one)."""
    try:
        timestamp = int(value.strip())
        age = request.received_at.timestamp() - timestamp
    except (ValueError, AttributeError, OverflowError):
        raise VerificationFailed("malformed_timestamp", f"{str(value)[:32]!r} is not a unix time ({what})") from None
    if abs(age) > tolerance:
        raise VerificationFailed(
            "stale_timestamp", f"{what} is {age:.0f} s from the arrival time (tolerance {tolerance} s)"
        )
    return timestamp


def parse_time(value: Any) -> datetime | None:
    """Provider timestamps: ISO 8601 (with Z or offset) or unix seconds/milliseconds; None if absent or
    unreadable (a bad timestamp is not worth refusing a message over)."""
    if value in (None, ""):
        return None
    try:
        if isinstance(value, (int, float)) or (isinstance(value, str) and value.strip().isdigit()):
            number = float(value)
            if number > 1e11:  # milliseconds
                number /= 1000
            return datetime.fromtimestamp(number, UTC)
        text = str(value).strip().replace("Z", "+00:00").replace("z", "+00:00")
        parsed = datetime.fromisoformat(text)
    except (ValueError, OverflowError, OSError):
        return None
    return as_utc(parsed)


def as_utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def field_text(fields: dict[str, Any], name: str, max_length: int | None = None) -> str | None:
    """A body parameter as text, None when absent or empty; ParseFailed when it has the wrong type
    (JSON bodies may carry numbers, never objects) or an impossible length."""
    value = fields.get(name)
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ParseFailed("invalid_payload", f"{name} must be a string, not {type(value).__name__}")
    text = str(value)
    if max_length is not None and len(text) > max_length:
        raise ParseFailed("invalid_payload", f"{name} is {len(text)} characters long (at most {max_length})")
    return text


def text_or_none(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, (dict, list)):
        return None
    text = str(value)
    return text if text != "" else None
