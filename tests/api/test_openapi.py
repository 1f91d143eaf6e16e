"""GET /openapi.json describes the read and media APIs truthfully: it is valid OpenAPI, its operations are
exactly the routes of the two APIs, and schemathesis, generating requests from it (valid ones and invalid
ones) with tenant A's credentials, finds no server error and no answer that breaks the documented status
codes, content types, headers or schemas."""

from __future__ import annotations

import re

import pytest
import schemathesis
from openapi_schema_validator import OAS31Validator
from openapi_schema_validator import validate as validate_schema
from openapi_spec_validator import validate
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.media import samples
from tests.support.media_uploads import A, seed_001_body, upload
from tests.support.schema_runs import call_and_validate
from tests.support.standard import inbound_body, post_standard, status_body

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
# The blueprints the document describes (the read, media and endpoints APIs); the others (webhooks, health, local media, the document and
# its page) are not part of it.
DOCUMENTED_BLUEPRINTS = {"read_api", "media_api", "endpoints_api"}
# Per operation and generation mode: enough to reach every parameter and error path, few enough that
# the whole run takes seconds.
EXAMPLES = 25


def test_the_spec_is_valid_openapi_and_covers_both_apis(client):
    spec = client.get("/openapi.json").get_json()
    validate(spec)
    assert {
        "/api/v1/messages",
        "/api/v1/messages/{messageId}",
        "/api/v1/events",
        "/api/v1/media",
        "/api/v1/media/{mediaId}",
        "/m/{mediaId}",
    } <= set(spec["paths"])
    assert set(spec["components"]["securitySchemes"]) == {"basicAuth", "bearerAuth"}


def test_the_document_covers_exactly_the_api_routes(app, client):
    spec = client.get("/openapi.json").get_json()
    documented = {(method.upper(), path) for path, item in spec["paths"].items() for method in item}
    routes = {
        (method, re.sub(r"<(?:[^<>:]+:)?([^<>]+)>", r"{\1}", rule.rule))
        for rule in app.url_map.iter_rules()
        if rule.endpoint.split(".")[0] in DOCUMENTED_BLUEPRINTS
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }
    assert documented == routes


def test_real_upload_answers_match_the_documented_schema(client):
    spec = client.get("/openapi.json").get_json()
    upload_schema = spec["components"]["schemas"]["Upload"]
    answer = upload(client, seed_001_body(samples.jpeg(), contentType="image/png")).get_json()
    assert answer["warnings"]  # every field filled in, warnings too
    validate_schema(answer, upload_schema, cls=OAS31Validator, format_checker=OAS31Validator.FORMAT_CHECKER)
    fetched = client.get(f"/api/v1/media/{answer['id']}", headers=A).get_json()
    validate_schema(fetched, upload_schema, cls=OAS31Validator, format_checker=OAS31Validator.FORMAT_CHECKER)


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=lambda mode: mode.value)
def test_schemathesis_finds_nothing(app, client, mode):
    # Something to find: messages with statuses, and a stored upload.
    post_standard(client, inbound_body("m-1"))
    post_standard(client, status_body("m-2", "delivered"))
    assert upload(client, seed_001_body(samples.jpeg())).status_code == 201
    schema = schemathesis.openapi.from_wsgi("/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == 16
    for operation in operations:
        if mode is GenerationMode.POSITIVE:  # the spec's own examples (a real upload) first
            for strategy in operation.get_strategies_from_examples():
                call_and_validate(strategy, examples=1, checks=CHECKS)
        call_and_validate(operation.as_strategy(generation_mode=mode), examples=EXAMPLES, checks=CHECKS)
