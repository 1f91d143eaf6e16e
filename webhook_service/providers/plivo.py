"""Plivo messaging: incoming SMS/MMS (the application's message_url) and message status callbacks.

Both are form-encoded POSTs. An incoming message carries `MessageUUID`, `From`, `To`, `Type` (sms|mms),
`Text` (SMS) or `Body` (MMS), and for MMS `MediaCount` with one `Media<N>` URL per file. A status
callback carries `MessageUUID`, `From`, `To`, `Status`, `ErrorCode` (failed/undelivered only) and the
timestamps `QueuedTime`, `SentTime`, `DeliveryReportTime`. Anything not read here stays only in the
raw request the intake keeps.

Signature (V3): headers `X-Plivo-Signature-V3` and `X-Plivo-Signature-V3-Nonce`, value
base64(HMAC-SHA256(auth token, base + "." + nonce)). For a POST, base = scheme://host/path, then
"?" + the URL's query parameters sorted by name and written `name=value` joined by "&" (when there is
a query or a body), then "." when there are both, then the body parameters sorted by name written
`namevalue` with nothing between them; a name's repeated values are sorted. This is our reading of
Plivo's documentation and SDK, and it reproduces the vector in docs/providers.md. The header may hold
several comma-separated signatures (Plivo signs with each of the account's tokens while one is being
rotated): any one matching is enough. Beyond ASCII, the signed string is tried both as UTF-8 and as
UTF-8 encoded twice, because Plivo's own SDKs disagree there (see _encodings). The nonce is random,
not a timestamp, so nothing bounds a replay's age: a replayed request verifies and is stored as a
duplicate (same MessageUUID, same report).

Assumptions (not verified against live traffic):
- Media URLs are the `Media<N>` parameters actually present, in N order: Plivo's API reference numbers
  them from 1, its support articles from 0, so both are read. `MediaCount` is not trusted. Plivo
  documents no content type per file and no `MediaUrl<N>` spelling, so neither is read.
- A request with a `Status` other than "received" is a status callback; one without `Status` but with
  message content (`Text`, `Body`, `MediaCount` or a media URL) is an incoming message. A "received"
  report without content yields no event (the raw request is still kept), as it says nothing the
  incoming-message webhook does not.
- `ErrorCode` "000" means "no error" (Plivo's message records use it for successful delivery).
- Timestamps (`YYYY-mm-dd HH:MM:SS.ffffff`) without an offset are UTC; the report's time is the one
  matching its status (DeliveryReportTime for delivered/undelivered/read, SentTime for sent,
  QueuedTime for queued). `Sequence` is not used as the report id: Plivo does not say it is stable
  across retries, so reports are deduplicated on status, error code and time.
- Only form bodies are understood; Plivo documents no JSON callbacks for messaging.
- Media downloads: Plivo documents no authentication for media.plivo.com; a connection's media_auth,
  when configured, is sent there (and only there) by default.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections import defaultdict
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from webhook_service.config.model import Connection
from webhook_service.model.events import Event, MediaRef, MessageEvent, StatusEvent
from webhook_service.model.statuses import canonical
from webhook_service.providers.base import ParseFailed, ProviderAdapter, VerificationFailed, WebhookRequest
from webhook_service.providers.fields import field_text, form_addresses, parse_time
from webhook_service.providers.signatures import constant_time_equal, require_header

STATUS_MAP = {
    "queued": "queued",
    "sent": "sent",
    "delivered": "delivered",
    "undelivered": "undelivered",
    "failed": "failed",
    "rejected": "rejected",  # in older versions of Plivo's status list
    "read": "read",
    "received": "received",
}
INBOUND_STATUS = "received"
# Which of the callback's timestamps says when the reported status happened.
STATUS_TIME_FIELDS = {
    "queued": "QueuedTime",
    "sent": "SentTime",
    "delivered": "DeliveryReportTime",
    "undelivered": "DeliveryReportTime",
    "read": "DeliveryReportTime",
}
NO_ERROR_CODE = "000"

SIGNATURE_HEADER = "X-Plivo-Signature-V3"
NONCE_HEADER = "X-Plivo-Signature-V3-Nonce"
SIGNATURE_BYTES = 32  # SHA-256

# Field limits: a genuine Plivo value is far shorter; anything longer is refused as malformed rather
# than stored (the columns behind from/to and statuses are bounded).
MAX_ID = 255
MAX_ADDRESS = 64
MAX_STATUS = 64
MAX_URL = 4096

_MEDIA_FIELD = re.compile(r"^Media([0-9]{1,4})$")
_CONTENT_FIELDS = ("Text", "Body", "MediaCount")


class PlivoAdapter(ProviderAdapter):
    name = "plivo"
    media_hosts = ("media.plivo.com",)
    # An empty Plivo XML document: the message_url may answer with XML, and this one does nothing.
    acknowledgement = ("<Response/>", "application/xml")

    def verify(self, request: WebhookRequest, connection: Connection) -> None:
        offered = _offered_signatures(require_header(request, SIGNATURE_HEADER, max_length=4096))
        nonce = require_header(request, NONCE_HEADER, max_length=256)
        try:
            parameters = request.form()
        except ParseFailed as error:
            raise VerificationFailed(
                "invalid_signature", f"body is not form-encoded, so it cannot be the signed parameters ({error.code})"
            ) from None
        signed_forms = _encodings(f"{_base_string(request.url, parameters)}.{nonce}")
        matches = [
            constant_time_equal(hmac.new(secret.encode("utf-8"), signed, hashlib.sha256).digest(), candidate)
            for secret in connection.secrets
            for signed in signed_forms
            for candidate in offered
        ]
        if not any(matches):
            raise VerificationFailed("invalid_signature", f"{SIGNATURE_HEADER} matches no configured auth token")

    def parse(self, request: WebhookRequest, connection: Connection) -> list[Event]:
        if request.content_type == "application/json":
            raise ParseFailed("unsupported_content_type", "Plivo callbacks are form-encoded, not JSON")
        fields: dict[str, str] = {}
        for name, value in request.form():
            fields.setdefault(name, value)
        message_id = field_text(fields, "MessageUUID", MAX_ID)
        if message_id is None:
            raise ParseFailed("missing_message_id", "no MessageUUID")
        status = field_text(fields, "Status", MAX_STATUS)
        inbound_status = status is None or status.strip().lower() == INBOUND_STATUS
        has_content = any(name in fields for name in _CONTENT_FIELDS) or any(map(_MEDIA_FIELD.match, fields))
        sender, recipients = form_addresses(fields, MAX_ADDRESS)
        if inbound_status and has_content:
            return [
                MessageEvent(
                    message_id, "inbound", sender, recipients, text=_message_text(fields), media=_media(fields)
                )
            ]
        if status is None:
            raise ParseFailed("missing_status", "no Status, and no message content")
        if inbound_status:
            return []
        error_code = field_text(fields, "ErrorCode", MAX_STATUS)
        time_field = STATUS_TIME_FIELDS.get(status.strip().lower())
        return [
            StatusEvent(
                provider_message_id=message_id,
                status=canonical(STATUS_MAP, status),
                provider_status=status,
                occurred_at=parse_time(fields.get(time_field)) if time_field else None,
                error_code=None if error_code == NO_ERROR_CODE else error_code,
                from_=sender,
                to=recipients,
            )
        ]


# Verification -------------------------------------------------------------------------------------


def _offered_signatures(header: str) -> list[bytes]:
    offered = []
    for candidate in header.split(","):
        try:
            decoded = base64.b64decode(candidate.strip(), validate=True)
        except (binascii.Error, ValueError):
            continue  # one unreadable entry does not spoil the others
        if len(decoded) == SIGNATURE_BYTES:
            offered.append(decoded)
    if not offered:
        raise VerificationFailed("malformed_signature", f"{SIGNATURE_HEADER} holds no base64 HMAC-SHA256 value")
    return offered


def _base_string(url: str, body_parameters: list[tuple[str, str]]) -> str:
    try:
        parts = urlsplit(url)
    except ValueError as error:  # e.g. an unbalanced "[" from a forged Host header
        raise VerificationFailed("invalid_url", f"the request URL cannot be parsed ({error})") from None
    base = urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
    query = "&".join(
        f"{name}={value}"
        for name, values in _sorted_values(parse_qsl(parts.query, keep_blank_values=True))
        for value in values
    )
    if query or body_parameters:
        base += "?" + query
    if query and body_parameters:
        base += "."
    return base + "".join(name + value for name, values in _sorted_values(body_parameters) for value in values)


def _encodings(text: str) -> list[bytes]:
    """The signed string as bytes. Plivo's SDKs disagree beyond ASCII: Node's encodes it as UTF-8,
    Python's encodes the UTF-8 bytes a second time (read back as Latin-1). Both forms are tried, so an
    emoji in a message verifies whichever the sender used; for ASCII they are the same."""
    once = text.encode("utf-8")
    twice = once.decode("latin-1").encode("utf-8")
    return [once] if once == twice else [once, twice]


def _sorted_values(pairs: list[tuple[str, str]]) -> list[tuple[str, list[str]]]:
    values_by_name: dict[str, list[str]] = defaultdict(list)
    for name, value in pairs:
        values_by_name[name].append(value)
    return [(name, sorted(values_by_name[name])) for name in sorted(values_by_name)]


# Parsing ------------------------------------------------------------------------------------------


def _message_text(fields: dict[str, str]) -> str | None:
    """SMS text is `Text`, MMS text is `Body`; either is read when the other is absent."""
    if fields.get("Type", "").strip().lower() == "mms":
        return field_text(fields, "Body") or field_text(fields, "Text")
    return field_text(fields, "Text") or field_text(fields, "Body")


def _media(fields: dict[str, str]) -> tuple[MediaRef, ...]:
    """The Media<N> parameters present, in N order, whether Plivo numbered them from 0 or from 1."""
    found = []
    for name in fields:
        match = _MEDIA_FIELD.match(name)
        url = field_text(fields, name, MAX_URL) if match else None
        if match and url is not None:
            found.append(((int(match.group(1)), match.group(1)), MediaRef(url=url)))
    return tuple(media for _, media in sorted(found, key=lambda item: item[0]))
