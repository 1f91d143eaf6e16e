"""The one way a secret query parameter is hidden, in what is stored (accepted and quarantined webhook
requests) and in what is logged (access lines): its value replaced, its name and place kept."""

from __future__ import annotations

from collections.abc import Set
from urllib.parse import parse_qsl, urlencode

REDACTED = "[redacted]"


def redact_query(query: str, secret_params: Set[str]) -> str:
    """`query` with the value of every parameter named in `secret_params` (lower case; names compare
    case-insensitively, after percent-decoding) replaced by REDACTED. A query without one comes back
    unchanged, byte for byte."""
    if not query:
        return query
    pairs = parse_qsl(query, keep_blank_values=True)
    if not any(name.lower() in secret_params for name, _ in pairs):
        return query
    return urlencode([(name, REDACTED if name.lower() in secret_params else value) for name, value in pairs])
