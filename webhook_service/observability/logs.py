"""Structured logs: one JSON object per line on stderr.

Callers pass facts as keyword fields (`log(logger, "webhook", outcome="accepted", ...)`). Secrets,
signatures and message bodies are never passed; phone numbers go through `phone.mask` first.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

_FIELDS = "fields"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        entry.update(getattr(record, _FIELDS, {}))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def configure_logging(level: str = "INFO") -> None:
    """Route our loggers (and gunicorn's, and huey's) through the JSON formatter, once per process."""
    root = logging.getLogger()
    if any(isinstance(h.formatter, JsonFormatter) for h in root.handlers):
        root.setLevel(level)
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Library chatter that would otherwise log request URLs (with signed query strings) at INFO.
    # huey logs two lines per task at INFO; the worker's own line per attachment says more.
    for noisy in ("botocore", "boto3", "urllib3", "azure", "s3transfer", "alembic.runtime.plugins", "huey"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    logging.getLogger("huey.consumer").setLevel(logging.INFO)  # start-up and shutdown lines


def log(logger: logging.Logger, event: str, level: int = logging.INFO, *, exc_info: bool = False, **fields) -> None:
    logger.log(level, event, exc_info=exc_info, extra={_FIELDS: fields})
