"""A NUL in a header value: gunicorn refuses such a request, but other WSGI servers pass it on, and no
PostgreSQL text or JSON value can hold one. Whatever the request's outcome (stored, refused, sent to an
unknown URL), it is answered as any other and kept with the NUL replaced by U+FFFD; never a 500."""

from __future__ import annotations

import sqlalchemy as sa

from tests.support.standard import inbound_body, standard_headers
from webhook_service.database.tables import QuarantinedRequest, RawRequest, RequestLogEntry

ODD = {"X-Odd": "a\x00b"}


def _post(client, path: str, headers: dict):
    body = inbound_body("m-nul")
    return client.post(path, data=body, headers={**headers, **ODD}, content_type="application/json")


def _all(runtime, table) -> list:
    with runtime.db.reading() as session:
        return list(session.scalars(sa.select(table)))


def test_an_accepted_webhook_is_stored_with_the_character_replaced(client, runtime):
    body = inbound_body("m-nul")
    response = client.post(
        "/webhooks/standard/main", data=body, headers={**standard_headers(body), **ODD}, content_type="application/json"
    )
    assert response.status_code == 200
    [raw] = _all(runtime, RawRequest)
    assert ["X-Odd", "a\ufffdb"] in raw.headers


def test_a_refused_webhook_is_quarantined_with_the_character_replaced(client, runtime):
    body = inbound_body("m-nul")
    response = _post(client, "/webhooks/standard/main", standard_headers(body, secret="wrong"))
    assert response.status_code == 401
    [entry] = _all(runtime, QuarantinedRequest)
    assert ["X-Odd", "a\ufffdb"] in entry.headers


def test_a_request_to_an_unknown_url_is_logged_with_the_character_replaced(client, runtime):
    response = _post(client, "/webhooks/nosuch/main", {})
    assert response.status_code == 404
    [row] = _all(runtime, RequestLogEntry)
    assert ["X-Odd", "a\ufffdb"] in row.headers
