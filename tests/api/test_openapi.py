"""GET /openapi.json describes the read and media APIs truthfully: it is valid OpenAPI, its operations are
exactly the routes of the two APIs, and schemathesis with every one of its checks, generating requests
from it (valid ones and invalid ones) with tenant A's credentials, finds nothing: no server error, no
answer that breaks the documented status codes, content types, headers or schemas, no valid request
refused and no invalid one accepted."""

from __future__ import annotations

import re

import pytest
import schemathesis
from openapi_schema_validator import OAS31Validator
from openapi_schema_validator import validate as validate_schema
from openapi_spec_validator import validate
from schemathesis.config import SchemathesisConfig
from schemathesis.engine import Status, StopReason, events, from_schema

from tests.media import samples
from tests.support.media_uploads import A, seed_001_body, upload
from tests.support.standard import inbound_body, post_standard, status_body

# The blueprints the document describes (the read, media and endpoints APIs); the others (webhooks, health, local media, the document and
# its page) are not part of it.
DOCUMENTED_BLUEPRINTS = {"read_api", "media_api", "endpoints_api"}
# Per operation and phase: enough to reach every parameter and error path, few enough that the run
# takes seconds (about 20 on a busy two-core machine).
EXAMPLES = 20
SEED = 1
# What positive_data_acceptance expects of a valid upload (its defaults, and the refusals that depend on
# the file's bytes rather than on the request's shape).
UPLOAD_ACCEPTANCE = ["2xx", "3xx", 401, 403, 404, 409, 413, 415, 422, 429]
# The same for registering or changing an endpoint: a URL is refused for what its host resolves to (400),
# and a tenant has at most 100 endpoints (409).
ENDPOINT_ACCEPTANCE = ["2xx", 400, 401, 403, 404, 409]


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


# Once, on SQLite: the run is about the document and the HTTP answers, which the database does not
# change (every other API test runs on both), and twice would take it past a minute.
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.slow
def test_schemathesis_with_every_check_finds_nothing(app, client, live_server):
    """What `schemathesis run --checks all` does, through its Python API (its engine: the examples, the
    coverage phase with its boundary and empty values, fuzzing with valid and invalid data, and the
    stateful phase), against the app served over real HTTP (the engine's WSGI transport passes options
    werkzeug's test client does not take). Deterministic, and bounded to stay well under a minute."""
    # Something to find: messages with statuses, and a stored upload.
    post_standard(client, inbound_body("m-1"))
    post_standard(client, status_body("m-2", "delivered"))
    assert upload(client, seed_001_body(samples.jpeg())).status_code == 201
    config = SchemathesisConfig.from_dict(
        {
            "headers": A,
            "seed": SEED,
            "continue-on-failure": True,
            "cache": {"enabled": False},
            "generation": {"max-examples": EXAMPLES, "deterministic": True, "database": "none"},
            "operations": [
                # Filters of one entry are alternatives (any one selects an operation), so each entry
                # names one operation; the first entry that selects an operation gives its settings.
                # An endpoint URL the document calls valid is still refused (400) for where it leads:
                # the SSRF rules resolve its host and check every address, past what a schema can say.
                *(
                    {
                        "include-name": name,
                        "checks": {"positive_data_acceptance": {"expected-statuses": ENDPOINT_ACCEPTANCE}},
                    }
                    for name in ("POST /api/v1/endpoints", "PATCH /api/v1/endpoints/{endpointId}")
                ),
                {
                    "include-path": "/api/v1/media",
                    "include-method": "POST",
                    # A request the document calls valid is still refused for what its bytes turn out to
                    # be (415, 413, 422): the type is sniffed, the size and pixels counted, after parsing.
                    "checks": {"positive_data_acceptance": {"expected-statuses": UPLOAD_ACCEPTANCE}},
                },
            ],
        }
    )
    config.projects.override.checks.update(included_check_names=["all"])
    schema = schemathesis.openapi.from_url(f"{live_server}/openapi.json", config=config)
    failures, errors, finished = [], [], None
    for event in from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished):
            failures += _failures(event)
        elif isinstance(event, events.NonFatalError | events.FatalError):
            errors.append(repr(event))
        elif isinstance(event, events.EngineFinished):
            finished = event
    assert not errors, errors
    assert not failures, "\n\n".join(failures)
    assert finished is not None and finished.stop_reason == StopReason.COMPLETED


def _failures(event: events.ScenarioFinished) -> list[str]:
    found = []
    for case_id, checks in event.recorder.checks.items():
        for check in checks:
            if check.status != Status.SUCCESS:
                interaction = event.recorder.interactions.get(case_id)
                answer = interaction.response if interaction else None
                found.append(
                    f"{event.phase.value} {event.recorder.label} {check.name}: "
                    f"{check.failure_info.failure.title if check.failure_info else check.status}\n"
                    f"{check.failure_info.code_sample if check.failure_info else ''}\n"
                    f"-> {answer.status_code if answer else None} {answer.content[:300] if answer else b''!r}"
                )
    return found


def test_each_setting_of_the_media_limits_is_served_its_own_document():
    """The document is built once per process (api/openapi.py): an app with other media limits still gets
    the document of its own."""
    from flask import Flask

    from webhook_service.api.openapi import DOCUMENT_PATH, build_spec, openapi_blueprint

    served = {}
    for max_file_bytes, allowed_types in ((1024, ["image/png"]), (5 * 1024 * 1024, ["image/png", "text/plain"])):
        for _ in range(2):  # the second app of the same settings takes the document made for the first
            app = Flask(__name__)
            app.register_blueprint(openapi_blueprint(max_file_bytes=max_file_bytes, allowed_types=allowed_types))
            document = app.test_client().get(DOCUMENT_PATH).get_json()
            assert document == build_spec(max_file_bytes=max_file_bytes, allowed_types=sorted(allowed_types))
            served[max_file_bytes] = document
    assert served[1024] != served[5 * 1024 * 1024]
