"""Twilio Programmable Messaging: incoming-message webhooks and outbound status callbacks.

Verified here rather than with the twilio package's RequestValidator: that package is a REST client with
its own dependency tree for one HMAC, and Twilio's published vector pins this code to its algorithm.

Both arrive form-encoded on the same URL. An incoming message carries `Body` and `NumMedia` with
`SmsStatus`/`MessageStatus` "received"; a status callback carries `MessageStatus` (and its deprecated
copy `SmsStatus`), `ErrorCode`/`ErrorMessage` on failed/undelivered, and sometimes `RawDlrDoneDate`.
The message id is `MessageSid` (MM... for MMS, SM... for SMS), with the deprecated copies `SmsSid`
and `SmsMessageSid` as fallbacks. Twilio adds parameters without notice: anything not read here stays
only in the raw request the intake keeps.

Signature (`X-Twilio-Signature`): base64(HMAC-SHA1(auth token, URL + concatenation, over the sorted
parameter names, of name + value for each of that name's values in sorted order)). A JSON body is
signed differently: the URL carries `?bodySHA256=<hex sha256 of the raw body>`, the signature covers
the URL alone, and the hash must match the body. As Twilio's own validator does, the signature is
accepted when computed over the URL as received, with its default port added (:443/:80), or with
any port removed. The URL is the public one the intake reconstructed (connection.public_url,
settings.public_base_url, or trusted proxy headers). There is no timestamp in the scheme, so a replay
verifies: it is stored as a duplicate (same MessageSid, same status report) and changes nothing.

Shared keys: a Twilio Webhook Rule can have a webhook signed with a SharedKey instead of the auth token.
Twilio then adds `X-Twilio-Webhooks-Signature-Settings: key=<key id>,algorithm=HMAC_SHA256` and signs
the same data with that key's secret and that algorithm (the twilio package's RequestValidator, 9.13,
computes it; the tests use it). The connection lists its keys in `options.shared_keys`, each pinned to
the algorithm of its Webhook Setting, so that the settings header, which is not signed, cannot choose:
- with the header, only the shared keys are tried (never the auth token), only the named key when the
  header names one, and only with the algorithm configured for it (a request that claims another one is
  a downgrade or a mixup and is refused);
- without the header, only the auth tokens with HMAC-SHA1 are tried (never a shared key's secret).

Mapping choices:
- `partially_delivered` -> `sent`: some of the message reached the handset and the rest did not (or
  not yet). The message did reach the carrier, but claiming `delivered` would be false and, being
  terminal, would hide a later `undelivered`; the provider's own word stays in providerStatus.
- `receiving` -> `received`: Twilio's state for an inbound message it is still processing. There is no
  canonical in-flight state for inbound messages, and the message exists either way.

Assumptions (not stated by Twilio's documentation):
- A request is an incoming message when its status is received/receiving (or absent) AND it carries
  content parameters (`Body` or `NumMedia`). A received/receiving report without content adds nothing
  to a message we get from the incoming-message webhook itself, so it yields no event (the raw request
  is still kept); mapping it as content would blank the text of the real webhook arriving after it.
- Media are the `MediaUrl{N}` parameters actually present, paired with `MediaContentType{N}`, in N
  order; `NumMedia` is not trusted to say how many there are.
- `RawDlrDoneDate` (YYMMDDhhmm, some carriers add ss) is in UTC.
- A body sent as `application/json` is a flat object with the same parameter names (string or number
  values); Twilio's messaging webhooks are form-encoded, but its signature scheme covers JSON bodies.

Media URLs (https://api.twilio.com/2010-04-01/Accounts/AC.../Messages/MM.../Media/ME...) need HTTP
Basic auth: the AccountSid from the URL with the connection's auth token (its first secret), sent to
api.twilio.com only. A connection with media_auth configured uses that instead.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import SplitResult, parse_qsl, urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

from webhook_service.config.model import Connection
from webhook_service.model.credentials import Credentials
from webhook_service.model.events import Event, MediaRef, MessageEvent, StatusEvent
from webhook_service.model.statuses import canonical
from webhook_service.providers.base import ParseFailed, ProviderAdapter, VerificationFailed, WebhookRequest
from webhook_service.providers.fields import field_text, form_addresses
from webhook_service.providers.signatures import constant_time_equal, decode_base64, require_header

STATUS_MAP = {
    "accepted": "accepted",
    "scheduled": "scheduled",
    "queued": "queued",
    "sending": "sending",
    "sent": "sent",
    "partially_delivered": "sent",
    "delivered": "delivered",
    "undelivered": "undelivered",
    "failed": "failed",
    "read": "read",
    "canceled": "canceled",
    "receiving": "received",
    "received": "received",
}
INBOUND_STATUSES = frozenset({"received", "receiving"})

SIGNATURE_HEADER = "X-Twilio-Signature"
SETTINGS_HEADER = "X-Twilio-Webhooks-Signature-Settings"
# The settings header without an algorithm means the auth token's scheme, as the twilio package reads it.
DEFAULT_ALGORITHM = "HMAC_SHA1"
HASHES = {"HMAC_SHA1": hashlib.sha1, "HMAC_SHA256": hashlib.sha256}
MAX_SETTINGS = 512
BODY_HASH_PARAMETER = "bodySHA256"
DEFAULT_PORTS = {"https": "443", "http": "80"}
MEDIA_HOST = "api.twilio.com"

# Field limits: a genuine Twilio value is far shorter; anything longer is refused as malformed rather
# than stored (the columns behind from/to and statuses are bounded).
MAX_ID = 255
MAX_ADDRESS = 64
MAX_STATUS = 64
MAX_URL = 4096
MAX_CONTENT_TYPE = 255
MAX_ERROR_MESSAGE = 2000

_MEDIA_URL_FIELD = re.compile(r"^MediaUrl([0-9]{1,4})$")
_DLR_DONE_DATE = re.compile(r"^[0-9]{10}([0-9]{2})?$")
_MEDIA_PATH = re.compile(
    r"^/2010-04-01/Accounts/(AC[0-9a-fA-F]{32})/Messages/[A-Za-z0-9]{1,64}"
    r"/Media/[A-Za-z0-9]{1,64}/?$"
)


class SharedKey(BaseModel):
    """A SharedKey a Twilio Webhook Setting signs with."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    # The key's id, as Twilio names it in the settings header (`key=`).
    id: str = Field(min_length=1, max_length=255, pattern=r"^[^,=\s]+$")
    secret: str = Field(min_length=1)
    # The Webhook Setting's signing algorithm; a request claiming another one is refused.
    algorithm: Literal["HMAC_SHA256", "HMAC_SHA1"] = "HMAC_SHA256"


class TwilioOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    shared_keys: list[SharedKey] = []

    @field_validator("shared_keys")
    @classmethod
    def _distinct_ids(cls, keys: list[SharedKey]) -> list[SharedKey]:
        ids = [key.id for key in keys]
        repeated = sorted({key_id for key_id in ids if ids.count(key_id) > 1})
        if repeated:
            raise ValueError(f"key id {repeated[0]!r} is listed twice")
        return keys


class TwilioAdapter(ProviderAdapter):
    name = "twilio"
    media_hosts = (MEDIA_HOST,)
    # TwiML that tells Twilio to do nothing more (no auto-reply).
    acknowledgement = ("<Response/>", "text/xml")
    options_model = TwilioOptions

    def validate_options(self, connection: Connection) -> str | None:
        problem = super().validate_options(connection)
        if problem is None and connection.options.get("shared_keys") and not connection.secrets:
            # The intake verifies only connections with secrets; and the auth token signs every webhook no
            # Webhook Rule matches, and downloads media.
            return "options.shared_keys: list the account's auth token in secrets as well"
        return problem

    def verify(self, request: WebhookRequest, connection: Connection) -> None:
        offered = decode_base64(require_header(request, SIGNATURE_HEADER, max_length=256), SIGNATURE_HEADER)
        keys = self._signing_keys(request, connection)
        parts = _split_url(request.url)
        body_hash = next(
            (value for name, value in parse_qsl(parts.query, keep_blank_values=True) if name == BODY_HASH_PARAMETER),
            None,
        )
        if body_hash is not None:
            actual = hashlib.sha256(request.body).hexdigest()
            if not constant_time_equal(actual, body_hash.strip().lower()):
                raise VerificationFailed("invalid_body_hash", f"{BODY_HASH_PARAMETER} does not match the body")
            parameter_strings = [""]
        else:
            parameter_strings = _signed_parameter_strings(request)
        urls = _url_variants(request.url, parts)
        matches = [
            constant_time_equal(_sign(secret, algorithm, url + parameters), offered)
            for secret, algorithm in keys
            for url in urls
            for parameters in parameter_strings
        ]
        if not any(matches):
            signers = "configured auth token" if request.headers.get(SETTINGS_HEADER) is None else "shared key"
            raise VerificationFailed(
                "invalid_signature",
                f"{SIGNATURE_HEADER} matches no {signers} for {len(urls)} URL form(s) of the public URL",
            )

    def _signing_keys(self, request: WebhookRequest, connection: Connection) -> list[tuple[str, str]]:
        """(secret, algorithm) pairs that may have signed the request: the auth tokens with HMAC-SHA1
        without the settings header, the shared keys it allows with it."""
        settings = request.headers.getlist(SETTINGS_HEADER)
        if not settings:
            return [(token, DEFAULT_ALGORITHM) for token in connection.secrets]
        if len(settings) > 1:
            raise VerificationFailed("malformed_signature_settings", f"{SETTINGS_HEADER} appears {len(settings)} times")
        key_id, algorithm = _read_settings(settings[0])
        keys = TwilioOptions.model_validate(connection.options).shared_keys
        if key_id is not None:
            keys = [key for key in keys if key.id == key_id]
            if not keys:
                raise VerificationFailed(
                    "unknown_shared_key", f"{SETTINGS_HEADER} names a key not in options.shared_keys"
                )
        elif not keys:
            raise VerificationFailed(
                "unknown_shared_key", f"{SETTINGS_HEADER} is present but no shared key is configured"
            )
        allowed: list[tuple[str, str]] = [(key.secret, key.algorithm) for key in keys if key.algorithm == algorithm]
        if not allowed:
            raise VerificationFailed(
                "signature_algorithm_mismatch",
                f"{SETTINGS_HEADER} claims {algorithm}; the key is configured for {keys[0].algorithm}",
            )
        return allowed

    def parse(self, request: WebhookRequest, connection: Connection) -> list[Event]:
        fields = _fields(request)
        message_id = (
            field_text(fields, "MessageSid", MAX_ID)
            or field_text(fields, "SmsMessageSid", MAX_ID)
            or field_text(fields, "SmsSid", MAX_ID)
        )
        if message_id is None:
            raise ParseFailed("missing_message_id", "no MessageSid, SmsMessageSid or SmsSid")
        status = field_text(fields, "MessageStatus", MAX_STATUS) or field_text(fields, "SmsStatus", MAX_STATUS)
        inbound_status = status is None or status.strip().lower() in INBOUND_STATUSES
        has_content = "Body" in fields or "NumMedia" in fields
        sender, recipients = form_addresses(fields, MAX_ADDRESS)
        if inbound_status and has_content:
            return [
                MessageEvent(
                    message_id, "inbound", sender, recipients, text=field_text(fields, "Body"), media=_media(fields)
                )
            ]
        if status is None:
            raise ParseFailed("missing_status", "no MessageStatus or SmsStatus, and no message content")
        if inbound_status:
            return []
        return [
            StatusEvent(
                provider_message_id=message_id,
                status=canonical(STATUS_MAP, status),
                provider_status=status,
                occurred_at=_dlr_done_date(field_text(fields, "RawDlrDoneDate", MAX_STATUS)),
                error_code=field_text(fields, "ErrorCode", MAX_STATUS),
                error_message=_truncated(field_text(fields, "ErrorMessage"), MAX_ERROR_MESSAGE),
                from_=sender,
                to=recipients,
            )
        ]

    def media_credentials(self, connection: Connection, url: str) -> Credentials | None:
        if connection.media_auth is not None:
            return super().media_credentials(connection, url)
        account_sid = _media_account_sid(url)
        if account_sid is None or not connection.secrets:
            return None
        token = base64.b64encode(f"{account_sid}:{connection.secrets[0]}".encode()).decode()
        return Credentials(headers={"Authorization": f"Basic {token}"}, hosts=frozenset(self.media_hosts))


# Verification -------------------------------------------------------------------------------------


def _sign(secret: str, algorithm: str, data: str) -> bytes:
    return hmac.new(secret.encode("utf-8"), data.encode("utf-8"), HASHES[algorithm]).digest()


def _read_settings(value: str) -> tuple[str | None, str]:
    """The key id (None when the header names none) and the algorithm (upper-cased, as the twilio package
    compares it; HMAC_SHA1 when absent) of `key=<id>,algorithm=<name>`. Other names are ignored (Twilio
    may add some); a part that is not name=value, a name given twice or an unknown algorithm is refused."""
    if len(value) > MAX_SETTINGS:
        raise VerificationFailed("malformed_signature_settings", f"{SETTINGS_HEADER} is {len(value)} characters long")
    found: dict[str, str] = {}
    for part in value.split(","):
        if not part.strip():
            continue
        name, equals, setting = part.partition("=")
        name, setting = name.strip().lower(), setting.strip()
        if not equals or not name or not setting or "=" in setting or name in found:
            raise VerificationFailed(
                "malformed_signature_settings", f"{SETTINGS_HEADER} is not distinct name=value pairs"
            )
        found[name] = setting
    algorithm = found.get("algorithm", DEFAULT_ALGORITHM).upper()
    if algorithm not in HASHES:
        raise VerificationFailed(
            "unsupported_signature_algorithm", f"{SETTINGS_HEADER} names {algorithm[:32]!r}; known: {', '.join(HASHES)}"
        )
    return found.get("key"), algorithm


def _signed_parameter_strings(request: WebhookRequest) -> list[str]:
    """name+value over the sorted names, each name's values sorted. Twilio's SDKs disagree on a name
    repeated with the same value (Python keeps both copies, Node keeps one), so when that happens both
    forms are tried."""
    try:
        pairs = request.form()
    except ParseFailed as error:
        raise VerificationFailed(
            "invalid_signature", f"body is not form-encoded, so it cannot be the signed parameters ({error.code})"
        ) from None
    values_by_name: dict[str, list[str]] = defaultdict(list)
    for name, value in pairs:
        values_by_name[name].append(value)
    every_value = "".join(name + value for name in sorted(values_by_name) for value in sorted(values_by_name[name]))
    distinct_values = "".join(
        name + value for name in sorted(values_by_name) for value in sorted(set(values_by_name[name]))
    )
    return [every_value] if every_value == distinct_values else [every_value, distinct_values]


def _split_url(url: str) -> SplitResult:
    try:
        return urlsplit(url)
    except ValueError as error:  # e.g. an unbalanced "[" from a forged Host header
        raise VerificationFailed("invalid_url", f"the request URL cannot be parsed ({error})") from None


def _url_variants(url: str, parts: SplitResult) -> list[str]:
    """The URL as received, with the scheme's default port added when it has none, and with its port
    removed when it has one: the forms Twilio's validator accepts."""
    variants = [url]
    userinfo, at, host_port = parts.netloc.rpartition("@")
    try:
        port = parts.port
    except ValueError:
        return variants  # an unreadable port: only the URL exactly as received can match
    if port is None:
        default = DEFAULT_PORTS.get(parts.scheme)
        if default and host_port:
            variants.append(urlunsplit(parts._replace(netloc=f"{userinfo}{at}{host_port}:{default}")))
    else:
        host = host_port[: host_port.rfind(":")]
        variants.append(urlunsplit(parts._replace(netloc=f"{userinfo}{at}{host}")))
    return variants


# Parsing ------------------------------------------------------------------------------------------


def _fields(request: WebhookRequest) -> dict[str, Any]:
    """The request's parameters by name; the first value wins when a name repeats."""
    if request.content_type == "application/json":
        return request.json_object()
    fields: dict[str, Any] = {}
    for name, value in request.form():
        fields.setdefault(name, value)
    return fields


def _truncated(value: str | None, max_length: int) -> str | None:
    return value[:max_length] if value is not None else None


def _media(fields: dict[str, Any]) -> tuple[MediaRef, ...]:
    """The MediaUrl{N} parameters present, in N order, with their MediaContentType{N}."""
    found = []
    for name in fields:
        match = _MEDIA_URL_FIELD.match(name)
        if match is None:
            continue
        url = field_text(fields, name, MAX_URL)
        if url is None:
            continue
        suffix = match.group(1)
        content_type = field_text(fields, f"MediaContentType{suffix}", MAX_CONTENT_TYPE)
        found.append(((int(suffix), suffix), MediaRef(url=url, content_type=content_type)))
    return tuple(media for _, media in sorted(found, key=lambda item: item[0]))


def _dlr_done_date(value: str | None) -> datetime | None:
    """The carrier's delivery-report time, YYMMDDhhmm[ss] in UTC; None when absent or unreadable."""
    if value is None or not _DLR_DONE_DATE.match(value):
        return None
    try:
        parsed = datetime.strptime(value, "%y%m%d%H%M%S" if len(value) == 12 else "%y%m%d%H%M")
    except ValueError:
        return None
    return parsed.replace(tzinfo=UTC)


# Media ---------------------------------------------------------------------------------------------


def _media_account_sid(url: str) -> str | None:
    """The AccountSid in a Twilio media URL, or None for any other URL."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        return None
    if parts.scheme != "https" or host != MEDIA_HOST:
        return None
    match = _MEDIA_PATH.match(parts.path)
    return match.group(1) if match else None
