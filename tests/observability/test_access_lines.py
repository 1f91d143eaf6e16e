"""The access line's fields (gunicorn_logging.py) for what the service tests cannot easily send: a
request gunicorn refused before the app saw it (nobody named its secret parameters, so the whole query
is hidden), and fields a client makes absurdly long. gunicorn's response object is stood in for by its
attributes; the real thing is exercised in tests/service/test_logs_and_metrics.py."""

from __future__ import annotations

from datetime import timedelta
from types import SimpleNamespace

from webhook_service.gunicorn_logging import access_fields
from webhook_service.observability.request_ids import REQUEST_ID, SECRET_QUERY_PARAMS

ANSWER = SimpleNamespace(status="400 Bad Request", sent=11)
REQUEST = SimpleNamespace(path="/webhooks/protexting")


def environ(**more):
    return {"REQUEST_METHOD": "GET", "PATH_INFO": "/webhooks/protexting", "REMOTE_ADDR": "127.0.0.1", **more}


def test_a_request_the_app_never_saw_has_its_whole_query_hidden():
    refused = {"REQUEST_METHOD": "GET", "QUERY_STRING": "access_token=abc&x=1", "REMOTE_ADDR": "127.0.0.1"}
    fields = access_fields(ANSWER, REQUEST, refused, timedelta(milliseconds=3))
    assert (fields["query"], fields["path"]) == ("[redacted]", "/webhooks/protexting")
    assert (fields["status"], fields["bytes"], fields["duration_ms"], fields["request_id"]) == (400, 11, 3.0, None)


def test_named_parameters_are_hidden_and_the_rest_kept():
    more = {"QUERY_STRING": "token=abc&page=2", SECRET_QUERY_PARAMS: frozenset({"token"}), REQUEST_ID: "r-1"}
    fields = access_fields(ANSWER, REQUEST, environ(**more), timedelta(0))
    assert (fields["query"], fields["request_id"]) == ("token=%5Bredacted%5D&page=2", "r-1")


def test_no_query_is_none():
    assert access_fields(ANSWER, REQUEST, environ(QUERY_STRING=""), timedelta(0))["query"] is None


def test_long_fields_are_bounded():
    more = {
        "PATH_INFO": "/" + "p" * 5000,
        "HTTP_USER_AGENT": "u" * 5000,
        "QUERY_STRING": "x=" + "q" * 5000,
        SECRET_QUERY_PARAMS: frozenset(),
    }
    fields = access_fields(ANSWER, REQUEST, environ(**more), timedelta(0))
    assert len(fields["path"]) == len(fields["user_agent"]) == len(fields["query"]) == 1024
