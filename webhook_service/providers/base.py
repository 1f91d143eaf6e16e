"""What every provider adapter is: verify a request, parse it into canonical events, and (optionally)
say how to authenticate media downloads. Everything else (connection lookup, body limits, Basic auth,
persistence, idempotency, logging, responses) is the intake's job, done once for all providers."""

from __future__ import annotations

import abc
import base64
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
# Parts of header names that say the value is a credential or a signature. Kept requests keep signatures
# (a replay checks them again); wherever a request is shown, or kept where no replay reads it (the request
# log), these are redacted too, as no adapter is asked which of its headers are secret.
_SECRET_HEADER_PARTS = ("auth", "signature", "token", "secret", "key", "password", "cookie", "session")


def looks_secret(header_name: str) -> bool:
    lowered = header_name.lower()
    return lowered in REDACTED_HEADERS or any(part in lowered for part in _SECRET_HEADER_PARTS)


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
        except (LookupError, ValueError) as error:
            # The XML declaration names an encoding expat cannot use: one Python does not know
            # (LookupError), a multi-byte one (ValueError) or a codec that fails (UnicodeError, a ValueError).
            # DefusedXmlException is a ValueError too, which is why it is caught first.
            raise ParseFailed("invalid_xml", f"body is not XML in an encoding that can be read: {error}") from None


class ProviderAdapter(abc.ABC):
    """Base class of the adapters in this package. Subclasses set `name` and implement verify/parse."""

    name: ClassVar[str]
    # Hosts that may receive the connection's media credentials when media_auth lists none.
    media_hosts: ClassVar[tuple[str, ...]] = ()
    # The window for schemes that sign a timestamp (five minutes unless the adapter says otherwise); a
    # connection may override it. Adapters whose scheme signs no timestamp never consult it.
    timestamp_tolerance: ClassVar[int] = 300
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

    def validate_secrets(self, connection: Connection) -> str | None:
        """A one-line problem with the connection's secrets, naming the one (`secrets[1]: ...`) and never
        quoting it, or None (called at start). Only schemes whose secrets have a shape of their own (a
        public key, an encoded key) say more: an auth token or a signing key is any non-empty string, and
        the schema refuses an empty one."""
        return None

    # Per-connection answers; the class attributes are the defaults (the mapping adapter's come from
    # each connection's options).
    def acknowledgement_for(self, connection: Connection) -> tuple[str, str]:
        return self.acknowledgement

    def secret_query_params_for(self, connection: Connection) -> frozenset[str]:
        return REDACTED_QUERY_PARAMS | {name.lower() for name in self.secret_query_params}

    def secret_headers_for(self, connection: Connection) -> frozenset[str]:
        return REDACTED_HEADERS

    def tolerance(self, connection: Connection) -> int:
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
            return Credentials(headers={"Authorization": f"Basic {token}"}, hosts=hosts)
        if auth.header and auth.value:  # the settings' validation requires both for kind "header"
            return Credentials(headers={auth.header: auth.value}, hosts=hosts)
        return None


# Shared by adapters ----------------------------------------------------------------------


def first_validation_error(error: ValidationError) -> tuple[str, str]:
    """Where and what pydantic's first complaint is, worded for an operator."""
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"])
    return where, first["msg"].removeprefix("Value error, ")
