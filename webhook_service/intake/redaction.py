"""A webhook request as it is kept (accepted, in raw_requests; refused, in quarantine): whole, except the
credentials it carried, which are replaced before anything is stored or logged."""

from __future__ import annotations

from collections.abc import Iterable, Set
from urllib.parse import urlsplit, urlunsplit

from webhook_service.config.model import Connection
from webhook_service.intake.message_store import RawRequestRecord
from webhook_service.observability.redaction import REDACTED, redact_query
from webhook_service.providers.base import ProviderAdapter, WebhookRequest


def stored_form(
    adapter: ProviderAdapter, connection: Connection, webhook_request: WebhookRequest, request_id: str
) -> RawRequestRecord:
    secret_headers = adapter.secret_headers_for(connection)
    return RawRequestRecord(
        request_id=request_id,
        method=webhook_request.method,
        url=redact_url(webhook_request.url, adapter.secret_query_params_for(connection)),
        headers=kept_headers(webhook_request.headers.items(), secret_headers),
        body=webhook_request.body,
        remote_addr=webhook_request.remote_addr,
        received_at=webhook_request.received_at,
    )


def kept_headers(headers: Iterable[tuple[str, str]], secret: Set[str] = frozenset()) -> list[list[str]]:
    """Headers as a kept request stores them: the `secret` ones (lower-case names) redacted, and a NUL,
    which no PostgreSQL text or JSON value can hold (gunicorn refuses it, other servers may pass it on),
    replaced by U+FFFD as in the normalized record (a header cannot carry the UTF-16 surrogates that
    `storable` also replaces: WSGI gives headers as latin-1)."""
    return [
        [_without_nul(name), REDACTED if name.lower() in secret else _without_nul(value)] for name, value in headers
    ]


def _without_nul(text: str) -> str:
    return text.replace("\x00", "\ufffd") if "\x00" in text else text


def redact_url(url: str, secret_params: set[str] | frozenset[str]) -> str:
    parts = urlsplit(url)
    query = redact_query(parts.query, secret_params)
    return url if query == parts.query else urlunsplit(parts._replace(query=query))
