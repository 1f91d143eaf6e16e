"""A webhook request as it is kept (accepted, in raw_requests; refused, in quarantine): whole, except the
credentials it carried, which are replaced before anything is stored or logged."""

from __future__ import annotations

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
        headers=[
            [name, REDACTED if name.lower() in secret_headers else value]
            for name, value in webhook_request.headers.items()
        ],
        body=webhook_request.body,
        remote_addr=webhook_request.remote_addr,
        received_at=webhook_request.received_at,
    )


def redact_url(url: str, secret_params: set[str] | frozenset[str]) -> str:
    parts = urlsplit(url)
    query = redact_query(parts.query, secret_params)
    return url if query == parts.query else urlunsplit(parts._replace(query=query))
