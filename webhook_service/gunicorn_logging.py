"""gunicorn's logger with the access line as one JSON object, or none (`access_log`, off by default).

gunicorn writes an access line whenever a logging configuration is given (ours is, to make its own
lines JSON), whatever `accesslog` says, and writes it as an Apache-format string with the whole query:
secrets included (a ProTexting `?access_token=...` in full). This one writes
`{"event": "access", "method", "path", "query", "status", "duration_ms", "bytes", "remote_addr",
"request_id", "user_agent"}` with the value of every secret query parameter replaced: the names the app
declared for the request (`observability/request_ids.py`), and, for a request the app never saw
(gunicorn refused it), the whole query.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from gunicorn.glogging import Logger

from webhook_service.observability.logs import log
from webhook_service.observability.redaction import REDACTED, redact_query
from webhook_service.observability.request_ids import REQUEST_ID, SECRET_QUERY_PARAMS

# Enough to read any real request; a line stays bounded whatever a client sends.
_MAX_FIELD = 1024


class JsonAccessLogger(Logger):
    access_enabled = False

    @property
    def access_log_enabled(self) -> bool:
        # gunicorn asks this before building an access line at all.
        return self.access_enabled

    def access(self, resp: Any, req: Any, environ: dict[str, Any], request_time: timedelta) -> None:
        if not self.access_enabled:
            return
        log(self.access_log, "access", logging.INFO, **access_fields(resp, req, environ, request_time))


def access_fields(resp: Any, req: Any, environ: dict[str, Any], request_time: timedelta) -> dict[str, Any]:
    query = environ.get("QUERY_STRING", "")
    secret = environ.get(SECRET_QUERY_PARAMS)
    if query:
        query = REDACTED if secret is None else redact_query(query, secret)
    status = str(resp.status).split(None, 1)[0]
    return {
        "method": _bounded(environ.get("REQUEST_METHOD")),
        # (A request gunicorn refused has no PATH_INFO; its parsed request still has the path.)
        "path": _bounded(environ.get("PATH_INFO") or getattr(req, "path", None)),
        "query": _bounded(query) or None,
        "status": int(status) if status.isdigit() else status,
        "duration_ms": round(request_time.total_seconds() * 1000, 2),
        "bytes": getattr(resp, "sent", None),
        "remote_addr": environ.get("REMOTE_ADDR"),
        "request_id": environ.get(REQUEST_ID),
        "user_agent": _bounded(environ.get("HTTP_USER_AGENT")),
    }


def _bounded(value: str | None) -> str | None:
    return value[:_MAX_FIELD] if value else value


def json_access_logger(*, enabled: bool) -> type[JsonAccessLogger]:
    """The logger class for gunicorn's `logger_class`, with the access line on or off."""
    return type("JsonAccessLogger", (JsonAccessLogger,), {"access_enabled": enabled})
