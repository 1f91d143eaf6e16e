"""The read API's query and path parameters are checked by the pydantic models the OpenAPI document is
generated from, and the two agree: the document's parameters are the models' fields, schemathesis
finds no documented value refused and no undocumented one accepted, and a refused parameter is
answered exactly as before the models (code, message, the first bad parameter in the old order, and
401 before any 400)."""

from __future__ import annotations

import pytest
import schemathesis
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import negative_data_rejection, positive_data_acceptance

from tests.support.media_uploads import A
from tests.support.schema_runs import call_and_validate
from tests.support.standard import inbound_body, post_standard
from webhook_service.api.openapi_document import DocumentSchemas, allowing_empty
from webhook_service.api.read_params import EventQuery, MessagePath, MessageQuery, ProviderMessagePath

READ_OPERATIONS = {
    ("/api/v1/messages", "query"): MessageQuery,
    ("/api/v1/messages/{messageId}", "path"): MessagePath,
    ("/api/v1/providers/{provider}/messages/{providerMessageId}", "path"): ProviderMessagePath,
    ("/api/v1/events", "query"): EventQuery,
}
EVENT_TYPES = (
    "message.received, message.status, attachment.stored, attachment.rejected, attachment.failed, endpoint.disabled"
)
EXAMPLES = 50


def _error(message: str) -> dict:
    return {"error": {"code": "invalid_parameter", "message": message}}


@pytest.mark.parametrize(("path", "location"), list(READ_OPERATIONS), ids=[path for path, _ in READ_OPERATIONS])
def test_documented_parameters_are_the_fields_of_the_validating_model(client, path, location):
    spec = client.get("/openapi.json").get_json()
    model = READ_OPERATIONS[path, location]
    documented = {p["name"]: p for p in spec["paths"][path]["get"]["parameters"] if p["in"] == location}
    assert set(documented) == {field.alias or name for name, field in model.model_fields.items()}
    properties = model.model_json_schema(schema_generator=DocumentSchemas)["properties"]
    for name, parameter in documented.items():
        expected = {key: value for key, value in properties[name].items() if key != "description"}
        assert parameter["schema"] == (allowing_empty(expected) if location == "query" else expected), name


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("/api/v1/messages?limit=5.5", "limit: expected an integer from 1 to 200"),
        ("/api/v1/messages?limit=5.", "limit: expected an integer from 1 to 200"),
        ("/api/v1/messages?limit=%205", "limit: expected an integer from 1 to 200"),
        ("/api/v1/messages?limit=%2B5", "limit: expected an integer from 1 to 200"),
        ("/api/v1/messages?limit=%C2%B2", "limit: expected an integer from 1 to 200"),
        ("/api/v1/messages?limit=0", "limit: expected an integer from 1 to 200"),
        ("/api/v1/messages?limit=201", "limit: expected an integer from 1 to 200"),
        ("/api/v1/messages?cursor=xyz", "cursor: not a cursor this API returned"),
        ("/api/v1/messages?cursor=" + "1" * 19, "cursor: not a cursor this API returned"),
        ("/api/v1/messages?direction=sideways", "direction: use inbound or outbound"),
        ("/api/v1/messages?status=lost", "status: unknown status 'lost'"),
        ("/api/v1/messages?status=" + "x" * 40, "status: unknown status '" + "x" * 32 + "'"),
        ("/api/v1/messages?since=yesterday", "since: expected an ISO 8601 time such as 2026-01-31T12:00:00Z"),
        ("/api/v1/messages?until=%00", "until: expected an ISO 8601 time such as 2026-01-31T12:00:00Z"),
        # Several bad parameters: the first in the order the handler always checked them.
        ("/api/v1/messages?until=x&direction=x&limit=abc", "limit: expected an integer from 1 to 200"),
        ("/api/v1/messages?until=x&status=x&direction=x", "direction: use inbound or outbound"),
        ("/api/v1/events?after=x", "cursor: not a cursor this API returned"),
        ("/api/v1/events?limit=1001", "limit: expected an integer from 1 to 1000"),
        (
            "/api/v1/events?type=message.received,zz,message.x",
            f"type: unknown event type 'message.x'; use {EVENT_TYPES}",
        ),
        ("/api/v1/events?type=x&limit=x&after=x", "cursor: not a cursor this API returned"),
    ],
)
def test_a_bad_parameter_gets_the_exact_error_body(client, query, message):
    response = client.get(query, headers=A)
    assert response.status_code == 400
    assert response.get_json() == _error(message)


@pytest.mark.parametrize(
    "query",
    [
        "/api/v1/messages?limit=&cursor=&direction=&status=&since=&until=&from=&to=",
        "/api/v1/events?after=&limit=&type=",
        "/api/v1/events?type=,message.received,,",
    ],
)
def test_an_empty_parameter_is_one_left_out(client, query):
    post_standard(client, inbound_body("m-1"))
    response = client.get(query, headers=A)
    assert response.status_code == 200
    assert len(response.get_json()["messages" if "messages" in query else "events"]) == 1


@pytest.mark.parametrize("query", ["/api/v1/messages?limit=abc", "/api/v1/events?type=nope", "/api/v1/messages/x"])
def test_credentials_are_checked_before_parameters(client, query):
    response = client.get(query)
    assert response.status_code == 401
    assert response.get_json()["error"]["code"] == "unauthorized"
    assert response.headers["WWW-Authenticate"].startswith("Basic")


@pytest.mark.slow
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=lambda mode: mode.value)
def test_documented_values_are_accepted_and_others_refused(app, client, mode):
    """Positive: no value the document allows gets a 400. Negative: no value it rules out gets an answer
    other than an error, except what the API has always read as left out rather than wrong."""
    post_standard(client, inbound_body("m-1"))
    schema = schemathesis.openapi.from_wsgi("/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    read_operations = [operation for operation in operations if operation.path in {p for p, _ in READ_OPERATIONS}]
    assert len(read_operations) == len(READ_OPERATIONS)
    for operation in read_operations:
        call_and_validate(
            operation.as_strategy(generation_mode=mode),
            examples=EXAMPLES,
            checks=[not_a_server_error, positive_data_acceptance, negative_data_rejection],
        )
