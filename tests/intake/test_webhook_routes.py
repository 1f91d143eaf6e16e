"""The webhook URLs are answered in front of Flask (intake/http.py): what Flask's routing and error handlers
did for them must still hold there: the same URLs matched, the same answers to other methods, names
decoded as werkzeug decodes them, and a bug or an outage on the way still answered in the API's JSON
shape, never with an empty page."""

from __future__ import annotations

import logging

import pytest
import sqlalchemy as sa

from tests.support.standard import inbound_body, post_standard, standard_headers
from webhook_service.database.tables import RequestLogEntry


def _entries(runtime) -> list[RequestLogEntry]:
    with runtime.db.reading() as session:
        return list(session.scalars(sa.select(RequestLogEntry).order_by(RequestLogEntry.id)))


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"])
def test_other_methods_on_a_webhook_url_are_405_with_allow(client, method):
    response = client.open("/webhooks/standard/main", method=method)
    assert response.status_code == 405
    assert response.headers["Allow"] == "POST"
    assert response.headers["X-Request-Id"]
    if method != "HEAD":
        assert response.get_json() == {
            "error": {"code": "method_not_allowed", "message": "The method is not allowed for the requested URL."}
        }


@pytest.mark.parametrize(
    "path", ["/webhooks/standard/main/", "/webhooks/", "/webhooks", "/webhooks/standard/main/extra", "/webhooks//main"]
)
def test_urls_that_are_not_a_webhook_endpoint_are_the_apps_404(client, runtime, path):
    response = client.post(path, data=inbound_body("m-1"), content_type="application/json")
    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == "not_found"
    assert _entries(runtime) == [], "not a webhook URL: no request log row"


def test_a_provider_and_connection_named_in_utf8_are_decoded_as_text(client, runtime):
    response = client.post("/webhooks/tw%C3%AFlio/m%C3%A4in", data=b"{}", content_type="application/json")
    assert response.status_code == 404
    [entry] = _entries(runtime)
    assert (entry.provider, entry.connection, entry.reason_code) == ("twïlio", "mäin", "unknown_provider")


def test_the_webhook_answers_carry_the_request_id_the_caller_offered(client):
    body = inbound_body("m-1")
    headers = {**standard_headers(body), "X-Request-Id": "provider-abc.123"}
    response = client.post("/webhooks/standard/main", data=body, headers=headers, content_type="application/json")
    assert response.status_code == 200
    assert response.headers["X-Request-Id"] == "provider-abc.123"


def test_a_bug_on_the_way_is_a_logged_json_500_not_an_empty_page(client, runtime, monkeypatch, caplog):
    # A bug cannot be sent by a caller (every input has its 4xx, tests/intake/test_fuzz_webhooks.py); one is
    # put in the intake's path to see it answered and logged as the app answers one.
    def broken(*_args, **_kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(runtime.intake, "process", broken)
    with caplog.at_level(logging.ERROR, logger="webhook_service.intake"):
        response = post_standard(client, inbound_body("m-1"))
    assert response.status_code == 500
    assert response.get_json() == {"error": {"code": "internal_error", "message": "An unexpected error occurred."}}
    assert response.headers["X-Request-Id"]
    [record] = [r for r in caplog.records if r.getMessage() == "unhandled_exception"]
    assert record.exc_info is not None


def test_an_outage_on_the_way_to_the_intake_is_a_503_to_retry(client, runtime, monkeypatch):
    def down(*_args, **_kwargs):
        raise sa.exc.OperationalError("SELECT", {}, Exception("the server is gone"))

    monkeypatch.setattr(runtime.intake.connections, "find", down)
    response = post_standard(client, inbound_body("m-1"))
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    assert response.get_json()["error"]["code"] == "unavailable"


def test_each_providers_acknowledgement_has_the_headers_werkzeug_would_send(runtime):
    """The 200 is written as plain WSGI; its headers and body are exactly those of the werkzeug Response
    it replaced, for every provider's acknowledgement (text and XML with their charset, JSON without)."""
    from werkzeug.test import create_environ, run_wsgi_app
    from werkzeug.wrappers import Response

    from webhook_service.intake.http import _Acknowledgement

    acknowledgements = {adapter.acknowledgement for adapter in runtime.intake.adapters.values()}
    assert {"text/xml", "application/json"} <= {mimetype for _, mimetype in acknowledgements}
    for body, mimetype in acknowledgements:
        expected = Response(body, status=200, mimetype=mimetype)
        expected.headers["X-Request-Id"] = "req-1"
        answers = [
            run_wsgi_app(app, create_environ(method="POST"))
            for app in (_Acknowledgement(body, mimetype, "req-1"), expected)
        ]
        (ours, our_status, our_headers), (theirs, their_status, their_headers) = answers
        assert our_status == their_status == "200 OK"
        assert list(our_headers.items()) == list(their_headers.items()), mimetype
        assert b"".join(ours) == b"".join(theirs)
