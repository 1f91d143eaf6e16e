"""Building Plivo requests the way Plivo does: form-encoded parameters signed with X-Plivo-Signature-V3.

The signer is written from Plivo's description, independently of the adapter, and is pinned by the
vector of docs/providers.md in tests/providers/test_plivo.py.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from urllib.parse import parse_qsl, urlencode, urlsplit

PLIVO_TOKEN = "my_auth_token"


def plivo_signature(
    url: str, params: list[tuple[str, str]], nonce: str, token: str = PLIVO_TOKEN, *, double_utf8: bool = False
) -> str:
    """`double_utf8` signs as plivo-python does beyond ASCII: UTF-8 bytes read as Latin-1, encoded again."""
    parts = urlsplit(url)
    base = f"{parts.scheme}://{parts.netloc}{parts.path}"
    query = sorted(parse_qsl(parts.query, keep_blank_values=True))
    if query or params:
        base += "?" + "&".join(f"{name}={value}" for name, value in query)
    if query and params:
        base += "."
    base += "".join(name + value for name, value in sorted(params))
    signed = f"{base}.{nonce}".encode()
    if double_utf8:
        signed = signed.decode("latin-1").encode()
    digest = hmac.new(token.encode(), signed, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def form_body(params: list[tuple[str, str]]) -> bytes:
    return urlencode(params).encode("ascii")


def inbound_params(
    message_uuid: str = "1e2f3a4b-0000-4000-8000-000000000001",
    *,
    text: str = "Hello",
    media=(),
    sender: str = "14155550100",
    to: str = "15551234567",
) -> list[tuple[str, str]]:
    """An incoming SMS (no media) or MMS (Body and Media1.. as Plivo's API reference numbers them)."""
    params = [("From", sender), ("To", to), ("MessageUUID", message_uuid)]
    if media:
        params += [("Type", "mms"), ("Body", text), ("MediaCount", str(len(media)))]
        params += [(f"Media{index}", url) for index, url in enumerate(media, start=1)]
    else:
        params += [("Type", "sms"), ("Text", text)]
    return [
        *params,
        ("Units", "1"),
        ("TotalRate", "0.00000"),
        ("TotalAmount", "0.00000"),
        ("MessageIntent", ""),
        ("PowerpackUUID", ""),
    ]


def status_params(
    message_uuid: str,
    status: str,
    *,
    error_code: str | None = None,
    sender: str = "15551234567",
    to: str = "14155550100",
    delivery_report_time: str = "",
) -> list[tuple[str, str]]:
    """A status callback's parameters."""
    return [
        ("MessageUUID", message_uuid),
        ("To", to),
        ("From", sender),
        ("Type", "sms"),
        ("Status", status),
        ("Units", "1"),
        ("TotalRate", "0.00500"),
        ("TotalAmount", "0.00500"),
        ("MCC", "310"),
        ("MNC", "410"),
        ("ErrorCode", error_code or ""),
        ("ParentMessageUUID", message_uuid),
        ("PartInfo", "1 of 1"),
        ("Sequence", "1"),
        ("MessageTime", "2026-01-02 03:04:00.000000"),
        ("QueuedTime", "2026-01-02 03:04:01.000000"),
        ("SentTime", "2026-01-02 03:04:02.000000"),
        ("DeliveryReportTime", delivery_report_time),
        ("PowerpackUUID", ""),
    ]
