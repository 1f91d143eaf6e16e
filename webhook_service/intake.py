"""POST /webhooks/<provider>[/<connection>]: the shared wrapper around every provider adapter.

verify (Basic auth, then the provider's signature) -> parse -> one transaction -> answer. A refused
request is answered 401/400/413 and kept whole in quarantine; a database outage is answered 503 so the
provider retries; nothing a caller can send produces a 500.
"""
from __future__ import annotations

import base64
import binascii
import logging
import re
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from flask import Blueprint, Response, current_app, request
from werkzeug.datastructures import Headers

from . import metrics
from .config import Connection
from .db import UNAVAILABLE_ERRORS
from .logs import log
from .phone import mask, normalize_address
from .message_store import RawRequestRecord, StoreResult, storable, store_webhook
from .models import QuarantinedRequest
from .providers import ADAPTERS, ParseFailed, ProviderAdapter, VerificationFailed, WebhookRequest
from .providers.base import constant_time_equal
from .runtime import Runtime, current_runtime

logger = logging.getLogger("webhook_service.intake")
blueprint = Blueprint("webhooks", __name__)

REDACTED = "[redacted]"
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


@dataclass
class IntakeResult:
    status: int
    outcome: str              # accepted | duplicate | unauthorized | bad_request | too_large | unavailable | not_found
    reason_code: str | None = None
    detail: str | None = None     # for operators only, never sent to the caller
    store: StoreResult | None = None
    provider_message_ids: list[str] = field(default_factory=list)
    senders: list[str] = field(default_factory=list)   # masked


@blueprint.post("/webhooks/<provider>")
@blueprint.post("/webhooks/<provider>/<connection_name>")
def receive(provider: str, connection_name: str | None = None) -> Response:
    started = time.perf_counter()
    runtime = current_runtime()
    request_id = _request_id()
    adapter = ADAPTERS.get(provider)
    connection = runtime.connections.find(provider, connection_name) if adapter else None
    if adapter is None or connection is None:
        result = IntakeResult(404, "not_found", "unknown_provider" if adapter is None else "unknown_connection")
        _log(result, request_id, provider, connection_name, started)
        return _json_error(404, "not_found", "No such webhook endpoint.", request_id)

    cap = runtime.settings.webhook_max_body_bytes
    body = _read_capped_body(cap)
    webhook_request = WebhookRequest(
        method=request.method, url=_public_url(runtime, connection), headers=Headers(request.headers),
        body=body if body is not None else b"", received_at=datetime.now(timezone.utc),
        remote_addr=request.remote_addr)
    if body is None:
        result = IntakeResult(413, "too_large", "body_too_large")
        _quarantine(runtime, adapter, connection, webhook_request, request_id, result,
                    f"body exceeds the {cap}-byte limit (Content-Length: "
                    f"{request.content_length if request.content_length is not None else 'absent'}); "
                    "body not kept")
        _log(result, request_id, provider, connection.name, started)
        return _json_error(413, "payload_too_large", f"Body exceeds {cap} bytes.", request_id)

    result = process(runtime, adapter, connection, webhook_request, request_id)
    _log(result, request_id, provider, connection.name, started)
    if result.status == 200:
        body_text, mimetype = adapter.acknowledgement_for(connection)
        response = Response(body_text, status=200, mimetype=mimetype)
    elif result.status == 401:
        # Nothing in the answer says why: the reason is for operators, in quarantine and the log.
        response = Response("", status=401)
    elif result.status == 400:
        response = _json_error(400, "bad_request", "The request body could not be understood.", request_id)
    else:
        response = _json_error(503, "unavailable", "Temporarily unable to store the request; retry.",
                               request_id)
        response.headers["Retry-After"] = "5"
    response.headers["X-Request-Id"] = request_id
    return response


# How much of a request process() verifies.
CHECK_ALL = "all"              # live requests: Basic auth and the provider's signature
CHECK_SIGNATURE = "signature"  # replays of stored requests, whose credentials were redacted
CHECK_NOTHING = "none"         # an operator vouches for the request


def process(runtime: Runtime, adapter: ProviderAdapter, connection: Connection,
            webhook_request: WebhookRequest, request_id: str, *, check: str = CHECK_ALL,
            quarantine_refused: bool = True) -> IntakeResult:
    """Verify, parse and store one request. Also used by operators to replay a quarantined one."""
    try:
        events, refused = _verified_events(adapter, connection, webhook_request, check)
    except Exception as error:
        # An adapter bug: keep the request (an operator replays it once the bug is fixed), then let
        # the app's error handler log the traceback and answer 500, so the provider retries too.
        if quarantine_refused:
            _quarantine(runtime, adapter, connection, webhook_request, request_id,
                        IntakeResult(500, "adapter_error", "adapter_error"),
                        f"{type(error).__name__} in the {adapter.name} adapter: {error}"[:2000])
        raise
    if refused is not None:
        if quarantine_refused:
            _quarantine(runtime, adapter, connection, webhook_request, request_id, refused, refused.detail)
        return refused
    provider_ids = list(dict.fromkeys(event.provider_message_id for event in events))
    senders = list(dict.fromkeys(mask(normalize_address(e.from_, runtime.settings.phone_default_region))
                                 for e in events if e.from_))
    try:
        stored = store_webhook(runtime.db, connection, _record(adapter, connection, webhook_request, request_id),
                               events, runtime.settings.phone_default_region)
    except UNAVAILABLE_ERRORS as error:
        log(logger, "database_unavailable", logging.ERROR, request_id=request_id,
            error=type(error).__name__)
        return IntakeResult(503, "unavailable", "database_unavailable", provider_message_ids=provider_ids,
                            senders=senders)
    if stored.new_attachment_ids:
        runtime.schedule_downloads(stored.new_attachment_ids)
    return IntakeResult(200, "duplicate" if stored.duplicate else "accepted", store=stored,
                        provider_message_ids=provider_ids, senders=senders)


MAX_PROVIDER_MESSAGE_ID = 255


def _check_identifiers(events) -> None:
    """Provider message ids are keys: an empty or absurdly long one cannot identify a message."""
    for event in events:
        identifier = event.provider_message_id
        if not identifier or len(identifier) > MAX_PROVIDER_MESSAGE_ID or storable(identifier) != identifier:
            raise ParseFailed("invalid_message_id", f"provider message id must be 1 to "
                                                    f"{MAX_PROVIDER_MESSAGE_ID} storable characters")


def _verified_events(adapter: ProviderAdapter, connection: Connection, webhook_request: WebhookRequest,
                     check: str) -> tuple[list, IntakeResult | None]:
    """The request's events, or the refusal (401/400) that stops it."""
    try:
        if check == CHECK_ALL:
            authenticate(adapter, connection, webhook_request)
        elif check == CHECK_SIGNATURE and connection.verify and connection.secrets:
            adapter.verify(webhook_request, connection)
    except VerificationFailed as failure:
        return [], IntakeResult(401, "unauthorized", failure.code, detail=failure.detail)
    try:
        events = adapter.parse(webhook_request, connection)
        _check_identifiers(events)
    except ParseFailed as failure:
        return [], IntakeResult(400, "bad_request", failure.code, detail=failure.detail)
    return events, None


def authenticate(adapter: ProviderAdapter, connection: Connection, webhook_request: WebhookRequest) -> None:
    """Basic auth (when the connection lists credentials), then the provider's own signature (when the
    connection has secrets). Development connections with verify = false skip both."""
    if not connection.verify:
        return
    if connection.basic_auth:
        _check_basic_auth(connection, webhook_request)
    if connection.secrets:
        adapter.verify(webhook_request, connection)


def _check_basic_auth(connection: Connection, webhook_request: WebhookRequest) -> None:
    header = webhook_request.headers.get("Authorization", "")
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic" or not encoded:
        raise VerificationFailed("missing_basic_auth", "no Basic Authorization header")
    try:
        offered = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise VerificationFailed("malformed_basic_auth", "Authorization header is not valid base64")
    # Compare against every accepted pair (rotation) without stopping early.
    matches = [constant_time_equal(pair.encode(), offered) for pair in connection.basic_auth]
    if not any(matches):
        raise VerificationFailed("invalid_basic_auth", "Basic credentials match no accepted pair")


def _read_capped_body(cap: int) -> bytes | None:
    """The body, or None when it is larger than `cap` (read at most cap + 1 bytes, whatever
    Content-Length claims)."""
    if request.content_length is not None and request.content_length > cap:
        return None
    chunks, size = [], 0
    while size <= cap:
        chunk = request.stream.read(min(65536, cap + 1 - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return None if size > cap else b"".join(chunks)


def _public_url(runtime: Runtime, connection: Connection) -> str:
    """The URL the provider called, as it signed it: the connection's configured public URL, else the
    configured public base URL, else what the (proxy-corrected) request says."""
    query = request.query_string.decode("latin-1")
    if connection.public_url:
        base = connection.public_url.split("?", 1)[0]
    else:
        root = runtime.settings.public_base_url or (request.host_url.rstrip("/") + request.script_root)
        base = root + request.path
    return f"{base}?{query}" if query else base


def _record(adapter: ProviderAdapter, connection: Connection, webhook_request: WebhookRequest,
            request_id: str) -> RawRequestRecord:
    secret_headers = adapter.secret_headers_for(connection)
    return RawRequestRecord(
        request_id=request_id, method=webhook_request.method,
        url=redact_url(webhook_request.url, adapter.secret_query_params_for(connection)),
        headers=[[name, REDACTED if name.lower() in secret_headers else value]
                 for name, value in webhook_request.headers.items()],
        body=webhook_request.body, remote_addr=webhook_request.remote_addr,
        received_at=webhook_request.received_at)


def redact_url(url: str, secret_params: set[str] | frozenset[str]) -> str:
    parts = urlsplit(url)
    if not parts.query:
        return url
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    if not any(name.lower() in secret_params for name, _ in pairs):
        return url
    query = urlencode([(name, REDACTED if name.lower() in secret_params else value) for name, value in pairs])
    return urlunsplit(parts._replace(query=query))


def _quarantine(runtime: Runtime, adapter: ProviderAdapter, connection: Connection,
                webhook_request: WebhookRequest, request_id: str, result: IntakeResult, detail: str) -> None:
    record = _record(adapter, connection, webhook_request, request_id)
    body = record.body
    try:
        if body and not runtime.quarantine_budget.admit(runtime.db, len(body)):
            # Said first, so that it survives the reason's length cap.
            detail = (f"body of {len(body)} bytes not kept: quarantine holds its budget of "
                      f"{runtime.quarantine_budget.limit_bytes} bytes (quarantine_max_bytes); {detail}")
            log(logger, "quarantine_body_not_kept", logging.WARNING, request_id=request_id,
                provider=connection.provider, connection=connection.name, bytes=len(body))
            body = b""
        with runtime.db.transaction() as session:
            session.add(QuarantinedRequest(
                request_id=request_id, received_at=record.received_at, provider=connection.provider,
                connection=connection.name, tenant_id=connection.tenant, method=record.method,
                url=record.url, headers=record.headers, body=body, remote_addr=record.remote_addr,
                http_status=result.status, reason_code=result.reason_code or result.outcome,
                reason=detail[:2000]))
    except UNAVAILABLE_ERRORS as error:
        # The answer stays 401/400/413: the request is refused either way. The log line keeps the fact.
        log(logger, "quarantine_unavailable", logging.ERROR, request_id=request_id,
            error=type(error).__name__)


def _request_id() -> str:
    offered = request.headers.get("X-Request-Id", "")
    return offered if _REQUEST_ID.match(offered) else uuid.uuid4().hex


def _json_error(status: int, code: str, message: str, request_id: str) -> Response:
    response = current_app.json.response({"error": {"code": code, "message": message}})
    response.status_code = status
    response.headers["X-Request-Id"] = request_id
    return response


def _log(result: IntakeResult, request_id: str, provider: str, connection: str | None, started: float) -> None:
    duration_ms = round((time.perf_counter() - started) * 1000, 2)
    # Unknown names come from the URL: keep them out of metric labels (unbounded cardinality).
    metrics.observe_webhook(provider if provider in ADAPTERS else "unknown", result.outcome,
                            duration_ms / 1000)
    log(logger, "webhook", logging.INFO if result.status < 500 else logging.ERROR,
        request_id=request_id, provider=provider[:32], connection=connection and connection[:64],
        outcome=result.outcome,
        status=result.status, reason=result.reason_code,
        provider_message_ids=result.provider_message_ids[:10], senders=result.senders[:5],
        message_ids=(result.store.message_ids[:10] if result.store else []),
        attachments_pending=(len(result.store.new_attachment_ids) if result.store else 0),
        duration_ms=duration_ms)
