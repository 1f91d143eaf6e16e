"""The JSON error shape every API answer uses: {"error": {"code": ..., "message": ...}}, and the one
mapping of outages (database, blob store, scratch space) to 503 answers, which the app registers for
every blueprint."""

from __future__ import annotations

from typing import Any

from flask import Response, jsonify
from werkzeug.exceptions import HTTPException

from storage import StorageError
from webhook_service.database.outage import UNAVAILABLE_ERRORS
from webhook_service.media.scratch import ScratchSpaceUnavailable

# What a view raises when something it depends on is down rather than when the request is wrong. A
# blob store error of any kind counts: the request was fine, the store could not serve it. So does
# scratch space that cannot be written (a full disk under an upload): storage too, from the caller's side.
OUTAGE_ERRORS: tuple[type[Exception], ...] = (StorageError, ScratchSpaceUnavailable, *UNAVAILABLE_ERRORS)
# Seconds a client is asked to wait before trying again: outages worth a 503 are expected to pass
# (a database failover, a restart), and sooner would only add load to a service that is recovering.
RETRY_AFTER_SECONDS = 5


class ApiError(Exception):
    """Raised by API views for a precise 4xx; rendered by the app-wide handler."""

    def __init__(self, status: int, code: str, message: str, **extra: Any):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.extra = extra


def api_error(status: int, code: str, message: str, **extra: Any) -> Response:
    response = jsonify({"error": {"code": code, "message": message, **extra}})
    response.status_code = status
    return response


def render_api_error(error: ApiError) -> Response:
    return api_error(error.status, error.code, error.message, **error.extra)


_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "too_many_requests",
}


def render_http_exception(error: HTTPException) -> Response:
    """Werkzeug's own 4xx (unknown route, wrong method, body too large) in the same JSON shape."""
    status = error.code or 500
    response = api_error(status, _CODES.get(status, "error"), error.description or error.name)
    # The exception's own headers but its HTML type: a 405's Allow, a 416's Content-Range (the length).
    for name, value in error.get_headers():
        if name.lower() != "content-type":
            response.headers[name] = value
    return response


def outage_error(error: Exception) -> ApiError | None:
    """The 503 an outage is answered with, or None when `error` is no outage."""
    if isinstance(error, StorageError):
        return ApiError(503, "storage_unavailable", "The media store is unavailable; try again shortly.")
    if isinstance(error, ScratchSpaceUnavailable):
        return ApiError(503, "storage_unavailable", "The upload cannot be written right now; try again shortly.")
    if isinstance(error, UNAVAILABLE_ERRORS):
        return ApiError(503, "unavailable", "The database is unavailable; try again shortly.")
    return None


def render_outage(error: Exception) -> Response:
    """The app-wide handler for OUTAGE_ERRORS, so that every API answers an outage alike, with the time
    to wait before retrying."""
    outage = outage_error(error)
    assert outage is not None  # registered for exactly these errors
    response = render_api_error(outage)
    response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response
