"""The JSON error shape every API answer uses: {"error": {"code": ..., "message": ...}}."""

from __future__ import annotations

from typing import Any

from flask import Response, jsonify
from werkzeug.exceptions import HTTPException, MethodNotAllowed


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
    if isinstance(error, MethodNotAllowed) and error.valid_methods:
        response.headers["Allow"] = ", ".join(error.valid_methods)
    return response
