"""Vonage webhooks: the SMS API (inbound messages and delivery receipts) and the Messages API.

SMS API (https://developer.vonage.com/en/messaging/sms/guides/inbound-sms, .../delivery-receipts).
Vonage calls with GET, form POST or JSON POST, as the account's settings say. This service's webhook
route accepts POST only: configure "POST" or "POST-JSON" in the dashboard, never GET.
- Inbound: msisdn (sender), to, messageId, text, type (text | unicode | binary; binary carries data and
  udh instead of text), keyword, message-timestamp ("YYYY-MM-DD HH:MM:SS", UTC), and for long messages
  concat = "true", concat-ref, concat-total, concat-part. Vonage does NOT reassemble long messages: each
  part is its own message here, with concatRef/concatTotal/concatPart in MessageEvent.extra so a consumer
  can join them.
- Delivery receipt: messageId, msisdn (the recipient), to (the sender id used), status, err-code ("0" is
  no error), scts (YYMMDDhhmm, UTC), message-timestamp, network-code, price, client-ref.
- Signed with `sig`: the hex digest of "&key=value" over every other parameter sorted by name, with "&"
  and "=" in values replaced by "_". The digest is an HMAC (md5, sha1, sha256 or sha512) keyed with the
  signature secret, or, for the dashboard's legacy default "MD5 hash", md5 of that string followed by the
  secret. The connection option `signature_method` picks one ("md5hash", "md5", "sha1", "sha256",
  "sha512"; default "sha256"); it must match the dashboard. Hex is compared case-insensitively. The
  signed `timestamp` parameter must be within the tolerance.

Messages API (https://developer.vonage.com/en/messages/concepts/signed-webhooks), JSON POST only.
- Inbound: message_uuid, from, to, timestamp (ISO 8601), channel (sms | mms | ...), message_type (text,
  image, audio, video, file, vcard) with text, or <message_type>.url (+ caption, name).
- Status: message_uuid, from, to, timestamp, status (submitted delivered read rejected undeliverable),
  error {type, title, detail, instance}.
- Signed with `Authorization: Bearer <JWT>`: HS256 (only; "none" and every other algorithm are refused)
  with the signature secret, claims `payload_hash` (hex sha256 of the raw body) and `iat`, within the
  tolerance. The bearer token occupies the Authorization header, so a connection that receives Messages
  API webhooks cannot also require Basic auth.

Tolerance: `timestamp` is the time Vonage *started* pushing the request, and Vonage retries for 24 hours,
so the default window is 25 hours (a connection may narrow it with timestamp_tolerance_seconds); the
JWT's `iat` is held to the same window, since Vonage does not say whether a retry is signed afresh. A
replay inside the window is a harmless duplicate: messages dedupe on their id and receipts on status,
error code and time.

Media: Messages API media URLs (https://api-us.nexmo.com/v3/media/<id>, valid 48 hours) need no
credentials unless the application turns on "Secure Inbound Media", which wants an application JWT
(RS256, minted from the application's private key) on every download. This adapter does not mint one:
leave that feature off, or give the connection a media_auth header; it is sent to *.nexmo.com only.

Assumptions (not stated by Vonage):
- Signed parameters are those of the body: form fields, or the top-level members of a JSON body; JSON
  strings are signed as they are, numbers and booleans as their JSON text, and anything else cannot be
  signed (refused). A repeated form field is refused as ambiguous.
- An SMS API body with a `status` parameter is a delivery receipt; without one, an inbound message.
  A JSON body with `message_uuid` is the Messages API; with `status`, a status webhook.
- Messages API addresses may be strings or, in older payloads, objects {"number": ...} or {"id": ...}.
- A Messages API error's code is the numeric title, else the fragment of its type URL after "#".
- Neither API gives a status report an id of its own, so the intake derives its key.
- Vonage may, after an internal error, send a Messages API callback unsigned; it is refused (401) and
  kept in quarantine, from where an operator can replay it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from datetime import UTC, datetime
from typing import Any, Literal

import jwt
from jwt.algorithms import HMACAlgorithm
from pydantic import BaseModel, ConfigDict

from webhook_service.config.model import Connection
from webhook_service.model.events import Event, MediaRef, MessageEvent, StatusEvent
from webhook_service.model.phone import MAX_ADDRESS_LENGTH
from webhook_service.model.statuses import canonical
from webhook_service.providers.base import ParseFailed, ProviderAdapter, VerificationFailed, WebhookRequest
from webhook_service.providers.fields import parse_time, text_or_none
from webhook_service.providers.signatures import caller_bytes, check_timestamp, constant_time_equal

# SMS API delivery receipt `status` -> canonical status.
SMS_STATUSES = {
    "accepted": "sent",  # accepted by the downstream carrier
    "buffered": "sent",  # held by the carrier, e.g. while the handset is off
    "delivered": "delivered",
    "expired": "expired",
    "failed": "undelivered",  # reported by the carrier: it could not deliver
    "rejected": "rejected",
    "unknown": "unknown",
}

# Messages API status webhook `status` -> canonical status.
MESSAGES_STATUSES = {
    "submitted": "sent",
    "delivered": "delivered",
    "read": "read",
    "rejected": "rejected",
    "undeliverable": "failed",  # Vonage could not reach the provider: never sent
}

RETRY_WINDOW_SECONDS = 25 * 3600
MEDIA_MESSAGE_TYPES = ("image", "audio", "video", "file", "vcard")
MAX_ID_LENGTH = 255
MAX_STATUS_LENGTH = 64
MAX_TIMESTAMP_LENGTH = 32
MAX_URL_LENGTH = 4096
MAX_NAME_LENGTH = 255
MAX_TOKEN_LENGTH = 4096
# The JWS compact form: base64url without padding (RFC 7515), the signature empty only for "none" (refused
# as an algorithm). PyJWT would also take a padded segment, a second spelling of a genuine token.
_COMPACT_JWS = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
_SCTS = re.compile(r"[0-9]{10}")
_DIGITS = re.compile(r"[0-9]+")


class _VonageHS256(HMACAlgorithm):
    """HS256 that takes the signature secret as Vonage has it, whatever its length. PyJWT warns on
    every verification with a key shorter than the 32 bytes RFC 7518 asks for; but the secret is
    Vonage's (the documented example's has 16 bytes), Vonage signs with it as it is, and a warning per
    webhook would tell an operator nothing they can change here."""

    def check_key_length(self, key: bytes) -> str | None:
        return None


# A verifier that knows HS256 and nothing else: "none" and every other algorithm are refused whatever the
# token's header says. It checks the signature only; the claims (payload_hash, iat) are ours to check.
# PyJWS rather than jwt.decode: PyJWT's claim checks would all be switched off (its clock must not decide,
# see _verify_jwt), and its key length warning cannot be turned off per call.
_JWS = jwt.PyJWS(algorithms=[])
_JWS.register_algorithm("HS256", _VonageHS256(HMACAlgorithm.SHA256))


class VonageOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # The dashboard's "signature method" for the SMS API; the Messages API always uses HS256.
    signature_method: Literal["md5hash", "md5", "sha1", "sha256", "sha512"] = "sha256"


class VonageAdapter(ProviderAdapter):
    name = "vonage"
    media_hosts = ("*.nexmo.com",)
    timestamp_tolerance = RETRY_WINDOW_SECONDS
    options_model = VonageOptions

    def verify(self, request: WebhookRequest, connection: Connection) -> None:
        scheme, _, token = (request.headers.get("Authorization") or "").strip().partition(" ")
        if scheme.lower() == "bearer":
            self._verify_jwt(token.strip(), request, connection)
        else:
            self._verify_sms_signature(request, connection)

    # SMS API: the `sig` parameter ---------------------------------------------------------------
    def _verify_sms_signature(self, request: WebhookRequest, connection: Connection) -> None:
        try:
            params = _signed_params(request)
        except ParseFailed as failure:
            raise VerificationFailed("unsigned_body", f"no signed parameters: {failure.detail}") from None
        offered = params.pop("sig", None)
        if not offered:
            raise VerificationFailed("missing_signature", "parameter sig is missing")
        if len(offered) > 256:
            raise VerificationFailed("malformed_signature", f"parameter sig is {len(offered)} characters long")
        if "timestamp" not in params:
            raise VerificationFailed("missing_signature", "parameter timestamp is missing")
        self._check_time(params["timestamp"], request, connection, "parameter timestamp")
        method = VonageOptions.model_validate(connection.options).signature_method
        signed_content = caller_bytes(
            "".join(f"&{key}={value.replace('&', '_').replace('=', '_')}" for key, value in sorted(params.items()))
        )
        for secret in connection.secrets:
            if constant_time_equal(_sms_digest(method, secret.encode(), signed_content), offered.lower()):
                return
        raise VerificationFailed("invalid_signature", "parameter sig matches no configured signature secret")

    # Messages API: the bearer JWT -----------------------------------------------------------------
    def _verify_jwt(self, token: str, request: WebhookRequest, connection: Connection) -> None:
        if len(token) > MAX_TOKEN_LENGTH:
            raise VerificationFailed("malformed_signature", f"bearer token is {len(token)} characters long")
        if not _COMPACT_JWS.fullmatch(token):
            raise VerificationFailed("malformed_signature", "bearer token is not a JWT")
        claims = _verified_claims(token, connection.secrets)
        payload_hash = claims.get("payload_hash")
        if not isinstance(payload_hash, str):
            raise VerificationFailed("missing_signature", "JWT has no payload_hash claim")
        if not constant_time_equal(hashlib.sha256(request.body).hexdigest(), payload_hash.lower()):
            raise VerificationFailed("invalid_signature", "JWT payload_hash does not match the body")
        # Our check, not PyJWT's (which _verified_claims does not run): the window is measured from
        # request.received_at, so that an operator's replay verifies at the original arrival time.
        issued_at = claims.get("iat")
        if isinstance(issued_at, bool) or not isinstance(issued_at, int):
            raise VerificationFailed("malformed_timestamp", "JWT iat claim is not a unix time")
        self._check_time(str(issued_at), request, connection, "JWT iat")

    def _check_time(self, value: str, request: WebhookRequest, connection: Connection, what: str) -> None:
        # check_timestamp compares as a float: a number too long for one would escape as OverflowError.
        # Header values are capped by require_header; these come from the body and the token.
        if len(value) > MAX_TIMESTAMP_LENGTH:
            raise VerificationFailed("malformed_timestamp", f"{what} is {len(value)} characters long")
        check_timestamp(value, request, self.tolerance(connection), what)

    # Parsing ------------------------------------------------------------------------------------
    def parse(self, request: WebhookRequest, connection: Connection) -> list[Event]:
        if _is_json(request):
            body = request.json_object()
            if "message_uuid" in body:
                return [_messages_api_event(body)]
            params = {key: _scalar_text(value) for key, value in body.items()}
        else:
            params = dict(reversed(request.form()))  # the first of a repeated field wins
        if "messageId" not in params:
            raise ParseFailed("invalid_payload", "neither messageId (SMS API) nor message_uuid (Messages API)")
        return [_delivery_receipt(params) if "status" in params else _inbound_sms(params)]


# SMS API ----------------------------------------------------------------------------------------


def _inbound_sms(params: dict[str, str | None]) -> MessageEvent:
    extra: dict[str, Any] = {}
    if params.get("concat-ref") is not None:
        extra.update(
            concatRef=params["concat-ref"],
            concatTotal=_integer(params.get("concat-total")),
            concatPart=_integer(params.get("concat-part")),
        )
    binary = params.get("type") == "binary"
    if binary:
        extra.update(binaryData=params.get("data"), udh=params.get("udh"))
    return MessageEvent(
        provider_message_id=_required_text(params.get("messageId"), "messageId", MAX_ID_LENGTH),
        direction="inbound",
        from_=_text(params.get("msisdn"), "msisdn", MAX_ADDRESS_LENGTH),
        to=_present(_text(params.get("to"), "to", MAX_ADDRESS_LENGTH)),
        text=None if binary else params.get("text"),
        occurred_at=parse_time(params.get("message-timestamp")),
        extra=extra,
    )


def _delivery_receipt(params: dict[str, str | None]) -> StatusEvent:
    provider_status = _text(params.get("status"), "status", MAX_STATUS_LENGTH) or ""
    error_code = params.get("err-code")
    return StatusEvent(
        provider_message_id=_required_text(params.get("messageId"), "messageId", MAX_ID_LENGTH),
        status=canonical(SMS_STATUSES, provider_status),
        provider_status=provider_status,
        occurred_at=_scts(params.get("scts")) or parse_time(params.get("message-timestamp")),
        error_code=error_code if error_code not in (None, "0") else None,
        # In a receipt, msisdn is the recipient and `to` the sender id the message was sent from.
        from_=_text(params.get("to"), "to", MAX_ADDRESS_LENGTH),
        to=_present(_text(params.get("msisdn"), "msisdn", MAX_ADDRESS_LENGTH)),
    )


# Messages API -----------------------------------------------------------------------------------


def _messages_api_event(body: dict[str, Any]) -> Event:
    message_uuid = _required_text(_scalar_text(body.get("message_uuid")), "message_uuid", MAX_ID_LENGTH)
    sender = _address(body.get("from"), "from")
    recipient = _address(body.get("to"), "to")
    occurred_at = parse_time(body.get("timestamp"))
    if "status" in body:
        provider_status = _text(_scalar_text(body.get("status")), "status", MAX_STATUS_LENGTH) or ""
        reported = body.get("error")
        error: dict[str, Any] = reported if isinstance(reported, dict) else {}
        return StatusEvent(
            provider_message_id=message_uuid,
            status=canonical(MESSAGES_STATUSES, provider_status),
            provider_status=provider_status,
            occurred_at=occurred_at,
            error_code=_messages_error_code(error),
            error_message=text_or_none(error.get("detail")),
            from_=sender,
            to=_present(recipient),
        )
    message_type = body.get("message_type")
    media_part = body.get(message_type) if message_type in MEDIA_MESSAGE_TYPES else None
    media_part = media_part if isinstance(media_part, dict) else {}
    media_url = _text(_scalar_text(media_part.get("url")), f"{message_type}.url", MAX_URL_LENGTH)
    media_name = _text(_scalar_text(media_part.get("name")), f"{message_type}.name", MAX_NAME_LENGTH)
    return MessageEvent(
        provider_message_id=message_uuid,
        direction="inbound",
        from_=sender,
        to=_present(recipient),
        text=text_or_none(body.get("text")) or text_or_none(media_part.get("caption")),
        media=(MediaRef(url=media_url, name=media_name),) if media_url else (),
        occurred_at=occurred_at,
    )


def _address(value: Any, name: str) -> str | None:
    if isinstance(value, dict):
        value = value.get("number") or value.get("id")
    return _text(_scalar_text(value), name, MAX_ADDRESS_LENGTH)


def _messages_error_code(error: dict[str, Any]) -> str | None:
    title = error.get("title")
    numeric = isinstance(title, int) and not isinstance(title, bool)
    if numeric or (isinstance(title, str) and _DIGITS.fullmatch(title)):
        return str(title)
    error_type = text_or_none(error.get("type"))
    if error_type and "#" in error_type:
        return error_type.rsplit("#", 1)[1] or None
    return None


# Shared -----------------------------------------------------------------------------------------


def _is_json(request: WebhookRequest) -> bool:
    content_type = request.content_type
    return content_type == "application/json" or content_type.endswith("+json")


def _signed_params(request: WebhookRequest) -> dict[str, str]:
    """The body's parameters as Vonage signed them; ParseFailed when the body cannot carry a signature."""
    if _is_json(request):
        params = {}
        for key, value in request.json_object().items():
            if isinstance(value, str):
                params[key] = value
            elif isinstance(value, (int, float, bool)):
                params[key] = json.dumps(value)
            else:
                raise ParseFailed("unsigned_value", f"member {key[:64]!r} is not a string, number or boolean")
        return params
    pairs = request.form()
    params = dict(pairs)
    if len(params) != len(pairs):
        raise ParseFailed("repeated_field", "a form field is repeated")
    return params


def _sms_digest(method: str, secret: bytes, signed_content: bytes) -> str:
    if method == "md5hash":
        return hashlib.md5(signed_content + secret).hexdigest()
    return hmac.new(secret, signed_content, method).hexdigest()


def _verified_claims(token: str, secrets: list[str]) -> dict[str, Any]:
    """The claims of a token signed with HS256 by any of the connection's secrets (key rotation)."""
    for secret in secrets:
        try:
            verified = _JWS.decode_complete(token, secret, algorithms=["HS256"])
        except (jwt.InvalidSignatureError, jwt.InvalidKeyError):
            # Not this secret's signature, or a secret PyJWT will not use as an HMAC key (one shaped like
            # a PEM, SSH or JWK key): the next secret may verify.
            continue
        except jwt.InvalidAlgorithmError:
            raise VerificationFailed("unsupported_algorithm", "JWT algorithm is not HS256") from None
        except jwt.InvalidTokenError as failure:
            raise VerificationFailed("malformed_signature", f"bearer token is not a JWT: {failure}") from None
        return _claims(verified["payload"])
    raise VerificationFailed("invalid_signature", "JWT signature matches no configured signature secret")


def _claims(payload: bytes) -> dict[str, Any]:
    try:
        claims = json.loads(payload)
    except (ValueError, RecursionError):
        raise VerificationFailed("malformed_signature", "JWT claims are not JSON") from None
    if not isinstance(claims, dict):
        raise VerificationFailed("malformed_signature", "JWT claims are not a JSON object")
    return claims


def _scalar_text(value: Any) -> str | None:
    """A JSON member as text: strings as they are, numbers as their JSON text; objects, arrays and
    null as None."""
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float, bool)):
        return json.dumps(value)
    return None


def _required_text(value: str | None, name: str, max_length: int) -> str:
    text = _text(value, name, max_length)
    if text is None:
        raise ParseFailed("invalid_payload", f"{name} is missing")
    return text


def _text(value: str | None, name: str, max_length: int) -> str | None:
    text = text_or_none(value)
    if text is not None and len(text) > max_length:
        raise ParseFailed("invalid_payload", f"{name} is {len(text)} characters long (at most {max_length})")
    return text


def _present(value: str | None) -> tuple[str, ...]:
    return (value,) if value else ()


def _integer(value: str | None) -> int | str | None:
    return int(value) if value is not None and _DIGITS.fullmatch(value) and len(value) < 10 else value


def _scts(value: str | None) -> datetime | None:
    """A receipt's scts, YYMMDDhhmm in UTC; None when absent or unreadable."""
    if value is None or not _SCTS.fullmatch(value):
        return None
    try:
        return datetime.strptime(value, "%y%m%d%H%M").replace(tzinfo=UTC)
    except ValueError:
        return None
