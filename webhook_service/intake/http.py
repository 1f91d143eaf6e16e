"""POST /webhooks/<provider>[/<connection>]: the HTTP side of the intake, the same for every provider.

Reads the body (capped), builds the provider-independent WebhookRequest, hands it to the intake and
answers: the provider's acknowledgement once stored, 401/400/413 for a refused request (kept in
quarantine), 503 with Retry-After when the database is down. Nothing a caller can send produces a 500.

A plain WSGI app on werkzeug's request and response, in front of the Flask app (`WebhookRoutes`), not a
Flask route: Flask's request and app contexts, URL adapter, routing, signals and response processing
cost about 0.1 ms of CPU per request (bare Flask's whole answer), a sixth of the intake's own work, and
the webhook uses none of them. Everything else reaches Flask as before, under the same middleware
(request ids, forwarded headers).
"""

from __future__ import annotations

import functools
import json
import logging
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from werkzeug.sansio.utils import get_current_url
from werkzeug.utils import get_content_type
from werkzeug.wrappers import Request, Response

from webhook_service.config.model import Connection
from webhook_service.database.outage import UNAVAILABLE_ERRORS
from webhook_service.database.quarantine import BODY_INCOMPLETE, BODY_TOO_LARGE
from webhook_service.intake import request_log
from webhook_service.intake.processing import Intake, IntakeResult
from webhook_service.observability import metrics
from webhook_service.observability.logs import log
from webhook_service.observability.request_ids import add_secret_query_params, request_id_for
from webhook_service.providers.base import WebhookRequest

logger = logging.getLogger("webhook_service.intake")

# /webhooks/<provider> and /webhooks/<provider>/<connection>: each name one non-empty path segment, as a
# werkzeug rule's default converter takes it (so "/webhooks/twilio/" matches neither, and is a 404).
_ROUTE = re.compile(r"/webhooks/([^/]+)(?:/([^/]+))?")


class WebhookRoutes:
    """WSGI middleware: requests to a webhook URL go to the intake's receiver, every other to `app`."""

    def __init__(self, receiver: WebhookReceiver, app: Any):
        self._receiver = receiver
        self._app = app

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        route = _ROUTE.fullmatch(environ.get("PATH_INFO", ""))
        if route is None:
            return self._app(environ, start_response)
        if environ.get("REQUEST_METHOD") != "POST":
            response = _json_error(
                405, "method_not_allowed", "The method is not allowed for the requested URL.", request_id_for(environ)
            )
            response.headers["Allow"] = "POST"
            return response(environ, start_response)
        provider, connection_name = (_wsgi_text(name) for name in route.groups())
        assert provider is not None  # the pattern's first group is not optional
        return self._receiver(environ, provider, connection_name)(environ, start_response)


def _wsgi_text(name: str | None) -> str | None:
    """A WSGI path's text (its UTF-8 bytes, each given as one latin-1 character), as werkzeug's routing
    decodes it."""
    return None if name is None else name.encode("latin-1").decode("utf-8", "replace")


class WebhookReceiver:
    """The answer to one webhook request."""

    def __init__(self, intake: Intake, *, max_body_bytes: int, public_base_url: str | None):
        self._intake = intake
        self._max_body_bytes = max_body_bytes
        self._public_base_url = public_base_url

    def __call__(self, environ: dict[str, Any], provider: str, connection_name: str | None) -> WSGIAnswer:
        started = time.perf_counter()
        request = Request(environ)
        request_id = request_id_for(environ)
        try:
            return self._receive(request, request_id, provider, connection_name, started)
        except UNAVAILABLE_ERRORS:
            # The intake answers its own outages; this is one on the way there (reading the connections).
            return _unavailable(request_id)
        except Exception as error:  # noqa: BLE001  # a bug: logged with its traceback, answered without details
            log(logger, "unhandled_exception", logging.ERROR, error=type(error).__name__, exc_info=True)
            return _json_error(500, "internal_error", "An unexpected error occurred.", request_id)

    def _receive(
        self, request: Request, request_id: str, provider: str, connection_name: str | None, started: float
    ) -> WSGIAnswer:
        intake = self._intake
        adapter = intake.adapters.get(provider)
        connection = intake.connections.find(provider, connection_name) if adapter else None
        if adapter is not None and connection is not None:
            # The access line hides what this connection's requests carry as credentials.
            add_secret_query_params(request.environ, adapter.secret_query_params_for(connection))
        else:
            result = IntakeResult(404, "not_found", "unknown_provider" if adapter is None else "unknown_connection")
            request_log.record_alone(
                intake.db,
                request_log.unknown_endpoint(
                    request_id,
                    provider,
                    connection_name,
                    result.reason_code or "not_found",
                    method=request.method,
                    path=request.path,
                    headers=request.headers.items(),
                    remote_addr=request.remote_addr,
                ),
            )
            _log(intake, result, request_id, provider, connection_name, started)
            return _json_error(404, "not_found", "No such webhook endpoint.", request_id)

        body, unread = _read_body(request, self._max_body_bytes)
        webhook_request = WebhookRequest(
            method=request.method,
            url=_public_url(request, self._public_base_url, connection),
            headers=request.headers,  # read from the environ when asked: copying every header cost more
            body=body,
            received_at=datetime.now(UTC),
            remote_addr=request.remote_addr,
        )
        if unread is not None:
            result = IntakeResult(unread.status, unread.outcome, unread.reason_code)
            intake.quarantine.keep(
                adapter, connection, webhook_request, request_id, unread.status, unread.reason_code, unread.detail
            )
            _log(intake, result, request_id, provider, connection.name, started)
            return _json_error(unread.status, unread.error_code, unread.message, request_id)

        result = intake.process(adapter, connection, webhook_request, request_id)
        _log(intake, result, request_id, provider, connection.name, started)
        if result.status == 200:
            body_text, mimetype = adapter.acknowledgement_for(connection)
            return _Acknowledgement(body_text, mimetype, request_id)
        if result.status == 401:
            return _unauthorized(connection, request_id)
        if result.status == 400:
            return _json_error(400, "bad_request", "The request body could not be understood.", request_id)
        return _unavailable(request_id)


# What a webhook is answered: a werkzeug Response, or the acknowledgement below.
WSGIAnswer = Callable[[dict[str, Any], Any], Iterable[bytes]]


class _Acknowledgement:
    """The provider's acknowledgement (the 200), as plain WSGI, with the headers werkzeug's Response
    would send: building that Response and its header objects cost a twentieth of the intake's CPU per
    webhook, for three fixed headers. (A request id is letters, digits, '.', '_' and '-' only.)"""

    __slots__ = ("_body", "_headers")

    def __init__(self, body: str, mimetype: str, request_id: str):
        self._body = body.encode()
        self._headers = [
            ("Content-Type", _content_type(mimetype)),
            ("Content-Length", str(len(self._body))),
            ("X-Request-Id", request_id),
        ]

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        start_response("200 OK", self._headers)
        return [self._body]


@functools.lru_cache(maxsize=64)
def _content_type(mimetype: str) -> str:
    """As werkzeug's Response writes it (text types, and XML, with their charset)."""
    return get_content_type(mimetype, "utf-8")


@dataclass(frozen=True)
class _UnreadBody:
    """Why a body was not read whole: the request is refused, kept in quarantine without its body."""

    status: int
    outcome: str
    reason_code: str
    error_code: str
    message: str
    detail: str  # for operators


def _read_body(request: Request, cap: int) -> tuple[bytes, _UnreadBody | None]:
    try:
        body = _read_capped_body(request, cap)
    except OSError:
        # The body stopped arriving: the client went away, or sent it slower than the web worker's read
        # limits allow (web_body_timeout_seconds, web_body_min_bytes_per_second).
        # (That its body is not kept, the entry says on its own: `body_was_kept`.)
        detail = "the body stopped arriving (the client went away, or sent it too slowly)"
        return b"", _UnreadBody(400, "bad_request", BODY_INCOMPLETE, "bad_request", "The body did not arrive.", detail)
    if body is None:
        declared = request.content_length if request.content_length is not None else "absent"
        detail = f"body exceeds the {cap}-byte limit (Content-Length: {declared})"
        return b"", _UnreadBody(
            413, "too_large", BODY_TOO_LARGE, "payload_too_large", f"Body exceeds {cap} bytes.", detail
        )
    return body, None


def _read_capped_body(request: Request, cap: int) -> bytes | None:
    """The body, or None when it is larger than `cap` (read at most cap + 1 bytes, whatever
    Content-Length claims)."""
    declared = request.content_length
    if declared is not None and declared > cap:
        return None
    stream = request.stream
    chunks, size = [], 0
    while size <= cap:
        chunk = stream.read(min(65536, cap + 1 - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
        if size == declared:
            # All of it: the stream stops at Content-Length, so another read would only return b"" (one
            # more pass through the stream and the server's body reader, a fortieth of the intake's CPU).
            break
    return None if size > cap else b"".join(chunks)


def _public_url(request: Request, public_base_url: str | None, connection: Connection) -> str:
    """The URL the provider called, as it signed it: the connection's configured public URL, else the
    configured public base URL, else what the (proxy-corrected) request says."""
    query = request.query_string.decode("latin-1")
    if connection.public_url:
        base = connection.public_url.split("?", 1)[0]
    else:
        root = public_base_url or (_host_url(request.scheme, request.host).rstrip("/") + request.script_root)
        base = root + request.path
    return f"{base}?{query}" if query else base


@functools.lru_cache(maxsize=256)
def _host_url(scheme: str, host: str) -> str:
    """`request.host_url`, which converts the URL to an IRI on every call (a tenth of the intake's own
    CPU); a service is called on a few names. Bounded: the Host header is the caller's."""
    return get_current_url(scheme, host)


def _json_error(status: int, code: str, message: str, request_id: str) -> Response:
    """The API's error shape ({"error": {"code", "message"}}), as the app's JSON answers write it."""
    body = json.dumps({"error": {"code": code, "message": message}}, separators=(",", ":")) + "\n"
    response = Response(body, status=status, mimetype="application/json")
    response.headers["X-Request-Id"] = request_id
    return response


def _unavailable(request_id: str) -> Response:
    response = _json_error(503, "unavailable", "Temporarily unable to store the request; retry.", request_id)
    response.headers["Retry-After"] = "5"
    return response


# Accepted (and duplicates) at info; refused (401, 400, 404, 413) at warning, so that a provider whose
# every request is refused stands out; a 503 (the database is down) at error.
_LEVELS = {2: logging.INFO, 4: logging.WARNING}


def _log(
    intake: Intake, result: IntakeResult, request_id: str, provider: str, connection: str | None, started: float
) -> None:
    duration_ms = round((time.perf_counter() - started) * 1000, 2)
    # Unknown names come from the URL: keep them out of metric labels (unbounded cardinality).
    metrics.observe_webhook(provider if provider in intake.adapters else "unknown", result.outcome, duration_ms / 1000)
    log(
        logger,
        "webhook",
        _LEVELS.get(result.status // 100, logging.ERROR),
        request_id=request_id,
        provider=provider[:32],
        connection=connection and connection[:64],
        outcome=result.outcome,
        status=result.status,
        reason=result.reason_code,
        provider_message_ids=result.provider_message_ids[:10],
        senders=result.senders[:5],
        message_ids=(result.store.message_ids[:10] if result.store else []),
        attachments_pending=(len(result.store.new_attachment_ids) if result.store else 0),
        duration_ms=duration_ms,
    )


UNAUTHORIZED_MESSAGE = "The request could not be verified."
BASIC_CHALLENGE = 'Basic realm="webhooks", charset="UTF-8"'


def _unauthorized(connection: Connection, request_id: str) -> Response:
    """The same short JSON error for every refusal: nothing in it says why (the reason is for operators,
    in quarantine and the log). A connection that takes Basic credentials also gets the challenge, which
    is what makes Twilio send the credentials of a https://user:password@host/... webhook URL: its first
    request goes without them, and it retries with them only after a 401 with WWW-Authenticate."""
    response = _json_error(401, "unauthorized", UNAUTHORIZED_MESSAGE, request_id)
    if connection.basic_auth:
        response.headers["WWW-Authenticate"] = BASIC_CHALLENGE
    return response
