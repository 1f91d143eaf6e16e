"""Every answer an operation gives is one the OpenAPI document declares for it, with its headers and the
error body: checked by calling every operation the document lists with what schemathesis does not send
(tests/api/test_openapi.py): no credentials, a body over the limit, a body that is not the JSON object
asked for, a refused value of each query parameter. The 503 of an outage: tests/api/test_outages.py."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest

from tests.api.document_requests import DocumentedOperation, body_of, declared_problems, documented_operations, url_of
from tests.support.media_uploads import A
from webhook_service.api.endpoints import MAX_BODY_BYTES
from webhook_service.api.upload_body import max_body_bytes

# Once, on SQLite: these answers come before the database is read, or do not depend on which it is.
pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
# Small, so that a body past every operation's limit is small too.
MEDIA_MAX_BYTES = 16 * 1024
TOO_LARGE = 1024 * 1024


@pytest.fixture
def settings_overrides() -> dict:
    return {"media": {"max_bytes": MEDIA_MAX_BYTES}}


@pytest.fixture
def operations(client) -> list[DocumentedOperation]:
    return documented_operations(client.get("/openapi.json").get_json())


def _call(client, runtime, operation: DocumentedOperation, *, headers: dict | None = None, **request: Any):
    if "data" not in request:
        request["json"] = body_of(operation)
    return client.open(url_of(operation, runtime), method=operation.method, headers=headers or {}, **request)


def _problems_of_status(operation: DocumentedOperation, response, status: int) -> list[str]:
    if response.status_code != status:
        return [f"{operation.name}: {response.status_code} instead of {status}: {response.get_data()[:200]!r}"]
    return declared_problems(operation, response)


def test_without_credentials_every_operation_answers_the_declared_401(client, runtime, operations):
    problems = []
    for operation in operations:
        if not operation.public:
            response = _call(client, runtime, operation)
            problems += _problems_of_status(operation, response, 401)
            if "WWW-Authenticate" not in operation.declared.get(401, {}).get("headers", {}):
                problems.append(f"{operation.name}: its 401 is declared without WWW-Authenticate")
    assert not problems, "\n".join(problems)


def test_a_body_over_the_limit_is_the_declared_413_for_every_operation_that_takes_one(client, runtime, operations):
    assert max(MAX_BODY_BYTES, max_body_bytes(MEDIA_MAX_BYTES)) < TOO_LARGE
    too_large = b'{"padding": "' + b"x" * TOO_LARGE + b'"}'
    problems = []
    for operation in (operation for operation in operations if operation.takes_body):
        response = _call(client, runtime, operation, headers=A, data=too_large, content_type="application/json")
        problems += _problems_of_status(operation, response, 413)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("body", [b"{", b"[]", b'{"unknown": 1}'], ids=["not JSON", "not an object", "no fields"])
def test_a_body_that_is_not_the_one_asked_for_is_the_declared_400(client, runtime, operations, body):
    problems = []
    for operation in (operation for operation in operations if operation.takes_body):
        response = _call(client, runtime, operation, headers=A, data=body, content_type="application/json")
        problems += _problems_of_status(operation, response, 400)
    assert not problems, "\n".join(problems)


def test_whatever_a_query_parameter_holds_the_answer_is_declared(client, runtime, operations):
    """Each query parameter given a value most of them refuse; whatever the operation makes of it (400,
    403 for a signed link's parameters, 200 for a free-text filter), the document declares it."""
    problems = []
    for operation in operations:
        for parameter in operation.query_parameters:
            url = urlsplit(url_of(operation, runtime))
            query = {**dict(parse_qsl(url.query)), parameter["name"]: "x"}
            response = client.open(
                url._replace(query=urlencode(query)).geturl(),
                method=operation.method,
                headers={} if operation.public else A,
                json=body_of(operation),
            )
            problems += declared_problems(operation, response)
    assert not problems, "\n".join(problems)
