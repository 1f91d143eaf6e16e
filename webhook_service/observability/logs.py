"""Structured logs: one JSON object per line on stderr.

Callers pass facts as keyword fields (`log(logger, "webhook", outcome="accepted", ...)`). Secrets,
signatures and message bodies are never passed; phone numbers go through `phone.mask` first.

A line reads `{"ts", "level", "logger", "event", "request_id", ...the caller's fields..., "exception"}`:
request_id when the line is written while a request (or a download a webhook caused) is worked on and
the caller did not pass it itself (`request_ids.py`); ts in ISO 8601
UTC with milliseconds, level in lower case, values JSON cannot hold as their str(), non-ASCII as it is.
python-json-logger does the formatting; the subclass below only names our keys and orders them. As
the library does, a record that another library logs with `extra=` attributes carries them as keys too
(gunicorn's statsd metrics at debug are the only ones among our dependencies).
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import Any

from pythonjsonlogger import json as json_logger

from webhook_service.observability.request_ids import current_request_id

# The caller's fields travel in this one record attribute, not as attributes of their own: `extra` may
# not name a LogRecord attribute, and callers use names such as `process`.
_FIELDS = "fields"
# LogRecord attribute -> our key, in the order the keys open every line.
_KEYS = {"asctime": "ts", "levelname": "level", "name": "logger", "message": "event"}


class JsonFormatter(json_logger.JsonFormatter):
    """Takes no arguments: gunicorn's logging config builds it by name ("()" in a dictConfig)."""

    def __init__(self) -> None:
        super().__init__(
            " ".join(f"%({attribute})s" for attribute in _KEYS),
            rename_fields={**_KEYS, "exc_info": "exception"},
            json_default=str,
            json_ensure_ascii=False,
        )

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")

    def process_log_record(self, log_data: dict[str, Any]) -> dict[str, Any]:
        # The library puts the exception before the record's extra attributes and keeps our fields
        # nested under their attribute's name: lift them to the top and leave the traceback last.
        log_data["level"] = log_data["level"].lower()
        exception = log_data.pop("exception", None)
        fields = log_data.pop(_FIELDS, {})
        request_id = current_request_id()
        if request_id is not None and "request_id" not in fields:
            log_data["request_id"] = request_id
        log_data.update(fields)
        if exception is not None:
            log_data["exception"] = exception
        return log_data


def configure_logging(level: str = "INFO") -> None:
    """Route our loggers (and gunicorn's, and huey's) through the JSON formatter, once per process."""
    root = logging.getLogger()
    if any(isinstance(h.formatter, JsonFormatter) for h in root.handlers):
        root.setLevel(level)
        _consumer_lines(root.level)
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Library chatter that would otherwise log request URLs (with signed query strings) at INFO.
    # huey logs two lines per task at INFO; the worker's own line per attachment says more.
    for noisy in ("botocore", "boto3", "urllib3", "azure", "s3transfer", "alembic.runtime.plugins", "huey"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    _consumer_lines(root.level)


def _consumer_lines(level: int) -> None:
    # huey's consumer start-up and shutdown lines, at INFO unless the level asked for is higher.
    logging.getLogger("huey.consumer").setLevel(max(logging.INFO, level))


def log(logger: logging.Logger, event: str, level: int = logging.INFO, *, exc_info: bool = False, **fields) -> None:
    logger.log(level, event, exc_info=exc_info, extra={_FIELDS: fields})
