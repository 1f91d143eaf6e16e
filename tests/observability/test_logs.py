"""The JSON log line, pinned: keys and their order, the ts form, level in lower case, caller fields that
LogRecord reserves (`process`), values JSON cannot hold, non-ASCII, the exception last; and gunicorn's
own lines through the formatter its logging config names."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from decimal import Decimal

from webhook_service.observability.logs import JsonFormatter, log
from webhook_service.observability.request_ids import request_id_bound

# 2023-11-14T22:13:20.123456 UTC
CREATED = 1700000000.123456


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def _record(event: str, level: int = logging.INFO, *, exc_info: bool = False, **fields) -> logging.LogRecord:
    logger = logging.getLogger("webhook_service.tests.logs")
    handler = _Records()
    logger.addHandler(handler)
    try:
        log(logger, event, level, exc_info=exc_info, **fields)
    finally:
        logger.removeHandler(handler)
    (record,) = handler.records
    record.created = CREATED
    return record


def test_the_line_format_is_pinned():
    record = _record("webhook", logging.WARNING, process=42, outcome="accepted", amount=Decimal("1.50"), who="Zoë")
    line = JsonFormatter().format(record)
    assert line == (
        '{"ts": "2023-11-14T22:13:20.123+00:00", "level": "warning", "logger": "webhook_service.tests.logs", '
        '"event": "webhook", "process": 42, "outcome": "accepted", "amount": "1.50", "who": "Zoë"}'
    )


def test_the_exception_comes_last():
    try:
        raise ValueError("the cause")
    except ValueError:
        record = _record("failed", logging.ERROR, exc_info=True, attempt=2, name="a field, not the logger")
    entry = json.loads(JsonFormatter().format(record))
    assert list(entry) == ["ts", "level", "logger", "event", "attempt", "name", "exception"]
    assert entry["level"] == "error" and entry["logger"] == "webhook_service.tests.logs"
    assert entry["name"] == "a field, not the logger"
    assert entry["exception"].startswith("Traceback (most recent call last):")
    assert entry["exception"].endswith("ValueError: the cause")


def test_a_record_without_fields_or_arguments_of_its_own():
    record = logging.LogRecord("gunicorn.error", logging.INFO, __file__, 1, "Listening at: %s", ("x",), None)
    record.created = CREATED
    assert json.loads(JsonFormatter().format(record)) == {
        "ts": "2023-11-14T22:13:20.123+00:00",
        "level": "info",
        "logger": "gunicorn.error",
        "event": "Listening at: x",
    }


def test_another_librarys_extra_attributes_are_keys_after_the_event():
    record = logging.LogRecord("gunicorn.error", logging.DEBUG, __file__, 1, "gunicorn.workers", (), None)
    record.metric, record.value = "gunicorn.workers", 2
    assert list(json.loads(JsonFormatter().format(record))) == ["ts", "level", "logger", "event", "metric", "value"]


# gunicorn applies logconfig_dict with its Logger; a subprocess keeps that configuration out of this one.
GUNICORN_LOGGER = """
from gunicorn.config import Config
from gunicorn.glogging import Logger
from webhook_service.gunicorn_config import logconfig_dict
config = Config()
config.set("logconfig_dict", logconfig_dict)
Logger(config).info("Listening at: %s (%s)", "http://127.0.0.1:1", 7)
"""


def test_gunicorn_lines_come_out_as_json():
    result = subprocess.run(
        [sys.executable, "-c", GUNICORN_LOGGER], capture_output=True, text=True, timeout=60, check=True
    )
    entry = json.loads(result.stderr.strip().splitlines()[-1])
    assert list(entry) == ["ts", "level", "logger", "event"]
    assert entry["logger"] == "gunicorn.error" and entry["level"] == "info"
    assert entry["event"] == "Listening at: http://127.0.0.1:1 (7)"


def test_a_line_written_for_a_request_carries_its_id_after_the_event():
    record = _record("enqueue_failed", logging.WARNING, attachments=2)
    with request_id_bound("req-1"):
        inside = json.loads(JsonFormatter().format(record))
    assert list(inside) == ["ts", "level", "logger", "event", "request_id", "attachments"]
    assert inside["request_id"] == "req-1"
    assert "request_id" not in json.loads(JsonFormatter().format(record))  # outside any request


def test_a_request_id_the_caller_passes_wins_and_keeps_its_place():
    record = _record("webhook", logging.WARNING, provider="twilio", request_id="own")
    with request_id_bound("bound"):
        entry = json.loads(JsonFormatter().format(record))
    assert list(entry) == ["ts", "level", "logger", "event", "provider", "request_id"]
    assert entry["request_id"] == "own"


def test_gunicorns_own_lines_carry_the_request_id_too():
    record = logging.LogRecord("gunicorn.error", logging.ERROR, __file__, 1, "Error handling request", (), None)
    with request_id_bound("req-2"):
        assert json.loads(JsonFormatter().format(record))["request_id"] == "req-2"


def test_a_log_level_above_info_holds_for_huey_and_gunicorn_too():
    """LOG_LEVEL=ERROR: no info line from huey's consumer or gunicorn either."""
    script = """
import logging, os
from webhook_service.observability.logs import configure_logging
configure_logging("ERROR")
from gunicorn.config import Config
from gunicorn.glogging import Logger
from webhook_service.gunicorn_config import logconfig_dict
config = Config()
config.set("logconfig_dict", logconfig_dict)
Logger(config).info("Listening at: %s (%s)", "http://127.0.0.1:1", 7)
logging.getLogger("huey.consumer").info("Huey consumer started")
Logger(config).error("an error")
logging.getLogger("huey.consumer").error("a huey error")
"""
    environment = {**os.environ, "LOG_LEVEL": "ERROR", "WEBHOOK_SERVICE_CONFIG": ""}
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True, env=environment
    )
    events = [json.loads(line)["event"] for line in result.stderr.strip().splitlines()]
    assert events == ["an error", "a huey error"]


def test_at_info_huey_keeps_its_start_up_lines():
    script = """
import logging
from webhook_service.observability.logs import configure_logging
configure_logging("INFO")
logging.getLogger("huey.consumer").info("Huey consumer started")
logging.getLogger("huey").info("a task line")
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True)
    assert [json.loads(line)["event"] for line in result.stderr.strip().splitlines()] == ["Huey consumer started"]
