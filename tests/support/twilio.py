"""Building Twilio requests the way Twilio does: form-encoded parameters signed with X-Twilio-Signature.

The signer is written from Twilio's published description, independently of the adapter, and is pinned
by the official vectors in tests/providers/test_twilio.py.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from urllib.parse import urlencode

# Twilio's documentation token: the official vectors double as fixtures.
TWILIO_TOKEN = "12345"
ACCOUNT_SID = "AC" + "0123456789abcdef" * 2


def twilio_signature(url: str, params: list[tuple[str, str]] = (), token: str = TWILIO_TOKEN) -> str:
    data = url
    for name in sorted({name for name, _ in params}):
        for value in sorted(value for other, value in params if other == name):
            data += name + value
    return base64.b64encode(hmac.new(token.encode(), data.encode(), hashlib.sha1).digest()).decode()


def form_body(params: list[tuple[str, str]]) -> bytes:
    """The body as Twilio encodes it (spaces as '+', UTF-8 percent-encoded)."""
    return urlencode(params).encode("ascii")


def inbound_params(
    message_sid: str = "SM" + "1" * 32,
    *,
    body: str = "Hello",
    media=(),
    sender: str = "+15550001111",
    to: str = "+15551234567",
) -> list[tuple[str, str]]:
    """An incoming-message webhook's parameters, in the order Twilio sends them."""
    params = [
        ("ToCountry", "US"),
        ("ToState", "CA"),
        ("SmsMessageSid", message_sid),
        ("NumMedia", str(len(media))),
        ("ToCity", "SAN FRANCISCO"),
        ("FromZip", "94105"),
        ("SmsSid", message_sid),
        ("FromState", "CA"),
        ("SmsStatus", "received"),
        ("FromCity", "SAN FRANCISCO"),
        ("Body", body),
        ("FromCountry", "US"),
        ("To", to),
        ("ToZip", "94105"),
        ("NumSegments", "1"),
        ("MessageSid", message_sid),
        ("AccountSid", ACCOUNT_SID),
        ("From", sender),
        ("ApiVersion", "2010-04-01"),
    ]
    for index, (url, content_type) in enumerate(media):
        params += [(f"MediaContentType{index}", content_type), (f"MediaUrl{index}", url)]
    return params


def status_params(
    message_sid: str,
    status: str,
    *,
    error_code: str | None = None,
    sender: str = "+15551234567",
    to: str = "+15550001111",
    raw_dlr_done_date: str | None = None,
) -> list[tuple[str, str]]:
    """A status callback's parameters, in the order Twilio sends them."""
    params = [
        ("SmsSid", message_sid),
        ("SmsStatus", status),
        ("MessageStatus", status),
        ("To", to),
        ("MessageSid", message_sid),
        ("AccountSid", ACCOUNT_SID),
        ("From", sender),
        ("ApiVersion", "2010-04-01"),
    ]
    if error_code is not None:
        params.append(("ErrorCode", error_code))
    if raw_dlr_done_date is not None:
        params.append(("RawDlrDoneDate", raw_dlr_done_date))
    return params


def media_url(message_sid: str, media_sid: str) -> str:
    return f"https://api.twilio.com/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/{message_sid}/Media/{media_sid}"
