"""Building Vonage requests the way Vonage does.

SMS API: parameters (form or JSON POST) signed with `sig` = hex digest over "&key=value" of the sorted
parameters, "&" and "=" in values replaced by "_" (HMAC with the signature secret, or the legacy
"md5hash": md5 of that string followed by the secret). Messages API: JSON with
`Authorization: Bearer <HS256 JWT>` whose claims carry the body's sha256 as payload_hash.

The signers are written from Vonage's published description, independently of the adapter, and are
pinned by the Vonage SDK vectors of docs/providers.md in tests/providers/test_vonage.py.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from urllib.parse import urlencode

VONAGE_SIGNATURE_SECRET = "signature_secret"  # the sha256 vector's secret (docs/providers.md)
API_KEY = "abcd1234"
APPLICATION_ID = "aaaaaaaa-bbbb-cccc-dddd-0123456789ab"


def sms_signature(params: dict[str, str], *, secret: str = VONAGE_SIGNATURE_SECRET, method: str = "sha256") -> str:
    signed = "".join(
        f"&{key}={str(params[key]).replace('&', '_').replace('=', '_')}" for key in sorted(params) if key != "sig"
    )
    if method == "md5hash":
        return hashlib.md5((signed + secret).encode()).hexdigest()
    return hmac.new(secret.encode(), signed.encode(), method).hexdigest()


def signed_params(
    params: dict[str, str],
    *,
    secret: str = VONAGE_SIGNATURE_SECRET,
    method: str = "sha256",
    timestamp: int | None = None,
) -> dict[str, str]:
    """The parameters with what a signed Vonage webhook adds: timestamp, nonce and sig."""
    signed = {
        **params,
        "timestamp": str(int(time.time()) if timestamp is None else timestamp),
        "nonce": str(uuid.uuid4()),
    }
    return {**signed, "sig": sms_signature(signed, secret=secret, method=method)}


def form_body(params: dict[str, str]) -> bytes:
    return urlencode(params).encode("ascii")


def inbound_sms(
    message_id: str = "0A0000000123ABCD1",
    *,
    text: str = "Hello world",
    sender: str = "447700900001",
    to: str = "15551234567",
    **extra: str,
) -> dict[str, str]:
    """An inbound SMS's parameters, in the order Vonage sends them."""
    return {
        "msisdn": sender,
        "to": to,
        "messageId": message_id,
        "text": text,
        "type": "text",
        "keyword": text.split(" ", 1)[0].upper(),
        "api-key": API_KEY,
        "message-timestamp": "2026-01-02 03:04:05",
        **extra,
    }


def delivery_receipt(
    message_id: str,
    status: str,
    *,
    err_code: str = "0",
    scts: str = "2601020304",
    recipient: str = "447700900001",
    sender: str = "15551234567",
) -> dict[str, str]:
    """A delivery receipt's parameters, in the order Vonage sends them."""
    return {
        "msisdn": recipient,
        "to": sender,
        "network-code": "23410",
        "messageId": message_id,
        "price": "0.03330000",
        "status": status,
        "scts": scts,
        "err-code": err_code,
        "api-key": API_KEY,
        "client-ref": "order-42",
        "message-timestamp": "2026-01-02 03:04:06",
    }


def messages_inbound(
    message_uuid: str,
    *,
    channel: str = "sms",
    message_type: str = "text",
    text: str | None = "Hi",
    media: dict | None = None,
    sender: str = "447700900001",
    to: str = "15551234567",
) -> bytes:
    """A Messages API inbound message as Vonage serializes it."""
    body = {
        "channel": channel,
        "message_uuid": message_uuid,
        "to": to,
        "from": sender,
        "timestamp": "2026-01-02T03:04:05.000Z",
        "message_type": message_type,
    }
    if text is not None:
        body["text"] = text
    if media is not None:
        body[message_type] = media
    if channel == "sms":
        body["sms"] = {"num_messages": "1", "keyword": "HI"}
    body["usage"] = {"price": "0.0057", "currency": "EUR"}
    return json.dumps(body).encode()


def messages_status(
    message_uuid: str,
    status: str,
    *,
    timestamp: str = "2026-01-02T03:04:05.000Z",
    error: dict | None = None,
    sender: str = "15551234567",
    to: str = "447700900001",
) -> bytes:
    """A Messages API status webhook as Vonage serializes it."""
    body = {
        "message_uuid": message_uuid,
        "to": to,
        "from": sender,
        "timestamp": timestamp,
        "status": status,
        "usage": {"currency": "EUR", "price": "0.0333"},
        "channel": "sms",
        "client_ref": "order-42",
    }
    if error is not None:
        body["error"] = error
    return json.dumps(body).encode()


def _segment(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data, separators=(",", ":")).encode()).rstrip(b"=").decode()


def messages_jwt(
    body: bytes,
    *,
    secret: str = VONAGE_SIGNATURE_SECRET,
    iat: int | None = None,
    header: dict | None = None,
    claims: dict | None = None,
) -> str:
    """The bearer token Vonage signs a Messages API webhook with. `header` replaces the JOSE header;
    `claims` overrides claims, a None value removing one."""
    token_claims = {
        "iat": int(time.time()) if iat is None else iat,
        "jti": str(uuid.uuid4()),
        "iss": "Vonage",
        "payload_hash": hashlib.sha256(body).hexdigest(),
        "api_key": API_KEY,
        "application_id": APPLICATION_ID,
        **(claims or {}),
    }
    token_claims = {name: value for name, value in token_claims.items() if value is not None}
    signing_input = f"{_segment(header or {'alg': 'HS256', 'typ': 'JWT'})}.{_segment(token_claims)}"
    signature = hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{base64.urlsafe_b64encode(signature).rstrip(b'=').decode()}"


def post_sms_form(client, params: dict[str, str], *, connection: str = "main"):
    return client.post(
        f"/webhooks/vonage/{connection}", data=form_body(params), content_type="application/x-www-form-urlencoded"
    )


def post_messages_api(client, body: bytes, *, connection: str = "main", secret: str = VONAGE_SIGNATURE_SECRET):
    return client.post(
        f"/webhooks/vonage/{connection}",
        data=body,
        content_type="application/json",
        headers={"Authorization": "Bearer " + messages_jwt(body, secret=secret)},
    )
