"""Request ids: every HTTP request gets one (the caller's `X-Request-Id` when it is a plain token, else a
new one), answered in its `X-Request-Id` header and carried by every log line written while the request
runs (`logs.py` reads `current_request_id()`), by its access line, and by what the request stores
(raw and quarantined requests), so that the worker's lines about the downloads a webhook caused carry
it too (`request_id_bound`).

The middleware also says which query parameters of the request are secret, for the access line: the
app's defaults, to which an endpoint that knows more (the intake, per provider connection) adds with
`add_secret_query_params`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Set
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import uuid_utils

# WSGI environ keys: what the access line (gunicorn_logging.py) reads after the app has answered.
REQUEST_ID = "webhook_service.request_id"
SECRET_QUERY_PARAMS = "webhook_service.secret_query_params"

_OFFERED = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_current: ContextVar[str | None] = ContextVar("webhook_service_request_id", default=None)


def current_request_id() -> str | None:
    """The id of the request (or of the download it caused) this thread is working on, if any."""
    return _current.get()


@contextmanager
def request_id_bound(request_id: str | None) -> Iterator[None]:
    """Log lines written inside carry `request_id`: the worker binds a webhook's while it downloads
    that webhook's attachments, the intake an operator replay's."""
    token = _current.set(request_id)
    try:
        yield
    finally:
        _current.reset(token)


def request_id_for(environ: dict[str, Any]) -> str:
    """The request's id: the one the middleware gave it, or (an app without the middleware) a new one."""
    request_id = environ.get(REQUEST_ID)
    if request_id is None:
        request_id = environ[REQUEST_ID] = _offered_or_new(environ.get("HTTP_X_REQUEST_ID", ""))
    return str(request_id)


def add_secret_query_params(environ: dict[str, Any], names: Set[str]) -> None:
    """More names (lower case) whose values the access line must not show."""
    environ[SECRET_QUERY_PARAMS] = frozenset(environ.get(SECRET_QUERY_PARAMS, ())) | frozenset(names)


def _offered_or_new(offered: str) -> str:
    # A caller's id is kept only when it cannot smuggle anything into a log line or a header.
    # A new one: a UUIDv7's 32 hex digits, time first (database/tables.py's new_id, for the same reason:
    # the request log's index on it takes them side by side).
    return offered if _OFFERED.match(offered) else uuid_utils.uuid7().hex


class RequestIds:
    """WSGI middleware: gives each request its id and binds it for the app's log lines."""

    def __init__(self, app: Any, *, secret_query_params: Set[str]):
        self._app = app
        self._secret_query_params = frozenset(secret_query_params)

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        request_id = request_id_for(environ)
        environ[SECRET_QUERY_PARAMS] = self._secret_query_params

        def start_with_id(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            if not any(name.lower() == "x-request-id" for name, _ in headers):
                headers = [*headers, ("X-Request-Id", request_id)]
            return start_response(status, headers, exc_info)

        # Bound while the app computes the answer, which is where it logs. (Not while a streamed body
        # is sent: wrapping the body would hide a file body from the server's sendfile.)
        with request_id_bound(request_id):
            return self._app(environ, start_with_id)
