"""GET /openapi.json: the OpenAPI 3.1 description of the read API (api/messages.py), the media API
(api/media.py) and the endpoints API (api/endpoints.py), generated from the pydantic models the views
validate with (api/read_params.py, api/media_models.py, api/endpoint_models.py) and the models of their
answers (api/response_models.py).

Generated here (api/openapi_document.py), not by flask-openapi3: it validates a request before the
view's own decorators run (a 400 before the 401), documents a body as JSON or multipart but not both,
and would read the upload body that api/upload_body.py streams.

The suite runs schemathesis against the document with every check (tests/api/test_openapi.py), so it
must say exactly what the code takes (an empty query value, a JSON null, a blank form field: left out;
the upload fields' patterns are upload_fields.py's own) and what it answers, error codes included; the
same test module checks that every operation here is a route of the app. Answers schemathesis cannot
bring about are checked by calling every operation of the document: the 503 of an outage (every
operation reads the database; tests/api/test_outages.py takes it away), and the 401, 413 and 400 of
tests/api/test_openapi_answers.py."""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from typing import Any

from flask import Blueprint, Response

from webhook_service.api import endpoint_models, media_models, read_params, response_models
from webhook_service.api.endpoints import MAX_BODY_BYTES as MAX_ENDPOINT_BODY_BYTES
from webhook_service.api.errors import RETRY_AFTER_SECONDS
from webhook_service.api.openapi_document import Answer, Operation, build_document
from webhook_service.api.upload_body import max_body_bytes
from webhook_service.config.model import DEFAULT_PHONE_NUMBER, DEFAULT_TENANT_ID
from webhook_service.media.validation import CONVERT_INPUT_FACTOR

DOCUMENT_PATH = "/openapi.json"
DOCUMENT_TITLE = "SMS/MMS webhook service: read and media APIs"

_INFO = {
    "title": DOCUMENT_TITLE,
    "version": "1",
    "description": (
        "Read normalized messages and the event feed, and upload media for outbound MMS. "
        "Authenticate with HTTP Basic (as in the provider documentation's examples) or a bearer "
        "API key; everything is scoped to the caller's tenant, and another tenant's objects are "
        'answered 404. Errors are `{"error": {"code", "message"}}`. A query parameter left empty '
        "counts as left out."
    ),
}
_SECURITY_SCHEMES = {
    "basicAuth": {"type": "http", "scheme": "basic"},
    "bearerAuth": {"type": "http", "scheme": "bearer", "description": "An API key."},
}
_ERROR_DESCRIPTIONS = {
    400: "The request is malformed (the error code says how).",
    401: "Credentials are missing or wrong.",
    403: "Not the caller's tenant or phone number, or a signed link that is invalid or expired.",
    404: "No such object (or another tenant's).",
    409: "The endpoint is declared in the configuration, or the tenant has as many endpoints as allowed.",
    410: "The upload was deleted.",
    413: "The file (or the request) is too large: Media file exceeds maximum size of 5MB.",
    415: "The file's type is not allowed: Unsupported media type: image/bmp.",
    422: "An image over the pixel limit, or one that cannot be decoded.",
    503: (
        "The database (`unavailable`) or the media store (`storage_unavailable`) is unavailable; retry after "
        "`Retry-After` seconds."
    ),
}
# The endpoints API's own wording where it differs: its body limit, and it reads no media.
_ENDPOINT_ERROR_DESCRIPTIONS = {
    **_ERROR_DESCRIPTIONS,
    413: f"The body is larger than {MAX_ENDPOINT_BODY_BYTES // 1024} KiB.",
    503: "The database is unavailable (`unavailable`); retry after `Retry-After` seconds.",
}
_STRING = {"type": "string"}
# The headers an error answer always carries: the challenge of a 401 (api/auth.py), the wait of a 503
# (api/errors.py, render_outage).
_ERROR_HEADERS = {
    401: {
        "WWW-Authenticate": {
            "required": True,
            "schema": _STRING,
            "description": "The HTTP Basic challenge (a bearer API key is accepted too).",
        }
    },
    503: {
        "Retry-After": {
            "required": True,
            "schema": {"type": "integer", "minimum": 1},
            "description": f"Seconds to wait before trying again ({RETRY_AFTER_SECONDS}).",
        }
    },
}
# Seed 001's request for a small text file, with the development defaults' tenant and number.
_UPLOAD_EXAMPLE = {
    "phoneNumber": DEFAULT_PHONE_NUMBER,
    "fileName": "hello.txt",
    "contentType": "text/plain",
    "data": "SGVsbG8sIHdvcmxkIQo=",
    "tenantId": DEFAULT_TENANT_ID,
}


def openapi_blueprint(*, max_file_bytes: int, allowed_types: list[str]) -> Blueprint:
    blueprint = Blueprint("openapi", __name__)
    body = _serialized_spec(max_file_bytes, tuple(sorted(allowed_types)))

    @blueprint.get(DOCUMENT_PATH)
    def openapi_json() -> Response:
        return Response(body, mimetype="application/json")

    return blueprint


@functools.lru_cache(maxsize=8)
def _serialized_spec(max_file_bytes: int, allowed_types: tuple[str, ...]) -> str:
    """The document as served. Serialized once: it never changes while the process runs, and kept as one
    string rather than thousands of dicts and strings, it costs the garbage collector nothing on every pass.
    Once per process too, not per app: building it (pydantic's JSON schemas of every model) was 45% of
    what making the app cost, which every gunicorn worker and every test pays."""
    return json.dumps(build_spec(max_file_bytes=max_file_bytes, allowed_types=list(allowed_types)))


def build_spec(*, max_file_bytes: int, allowed_types: list[str]) -> dict[str, Any]:
    return build_document(
        info=_INFO,
        security_schemes=_SECURITY_SCHEMES,
        operations=[*_read_operations(), *_media_operations(max_file_bytes, allowed_types), *_endpoint_operations()],
    )


def _read_operations() -> list[Operation]:
    one_message = {200: Answer("The message.", response_models.Message), **_errors(401, 404, 503)}
    return [
        Operation(
            "GET",
            "/api/v1/messages",
            "listMessages",
            "messages",
            "Messages, newest first, with filters and cursor pagination.",
            {200: Answer("A page of messages.", response_models.MessagePage), **_errors(400, 401, 503)},
            query=read_params.MessageQuery,
        ),
        Operation(
            "GET",
            "/api/v1/messages/{messageId}",
            "getMessage",
            "messages",
            "One message by its id.",
            one_message,
            path_parameters=read_params.MessagePath,
        ),
        Operation(
            "GET",
            "/api/v1/providers/{provider}/messages/{providerMessageId}",
            "getMessageByProviderId",
            "messages",
            "One message by its provider and the provider's message id.",
            one_message,
            path_parameters=read_params.ProviderMessagePath,
        ),
        Operation(
            "GET",
            "/api/v1/events",
            "listEvents",
            "events",
            "The ordered event feed: pass `nextCursor` back as `after`; an empty page means caught up.",
            {200: Answer("A page of events.", response_models.EventPage), **_errors(400, 401, 503)},
            query=read_params.EventQuery,
        ),
    ]


def _media_operations(max_file_bytes: int, allowed_types: list[str]) -> list[Operation]:
    upload = response_models.Upload
    return [
        Operation(
            "POST",
            "/api/v1/media",
            "uploadMedia",
            "media",
            "Upload a file to send by MMS; the answer's `uri`/`url` goes into `mediaUrls`.",
            {
                201: Answer(
                    "Stored.", upload, {"Location": {"schema": _STRING, "description": "The upload's metadata URL."}}
                ),
                **_errors(400, 401, 403, 413, 415, 422, 503),
            },
            query=media_models.UploadQuery,
            # Documentation only: api/upload_body.py reads the body as it streams in.
            bodies={
                "application/json": media_models.UploadRequest,
                "multipart/form-data": media_models.MultipartUpload,
            },
            body_examples={"application/json": _UPLOAD_EXAMPLE},
            description=_upload_description(max_file_bytes, allowed_types),
        ),
        Operation(
            "GET",
            "/api/v1/media/{mediaId}",
            "getMedia",
            "media",
            "An upload's metadata, with a freshly signed URL.",
            {200: Answer("The upload.", upload), **_errors(401, 404, 503)},
            path_parameters=media_models.MediaPath,
        ),
        Operation(
            "DELETE",
            "/api/v1/media/{mediaId}",
            "deleteMedia",
            "media",
            "Delete an upload: its signed URLs stop working and its stable URL answers 410.",
            {204: Answer("Deleted."), **_errors(401, 404, 503)},
            path_parameters=media_models.MediaPath,
        ),
        Operation(
            "GET",
            "/m/{mediaId}",
            "followStableMediaUrl",
            "media",
            "An upload's stable URL (`stableUrl`): a redirect to a freshly signed URL of the file.",
            {
                302: Answer(
                    "Redirect to the file's signed URL.", headers={"Location": {"required": True, "schema": _STRING}}
                ),
                **_errors(403, 404, 410, 503),
            },
            path_parameters=media_models.MediaPath,
            query=media_models.StableLinkQuery,
            public=True,
        ),
    ]


def _upload_description(max_file_bytes: int, allowed_types: list[str]) -> str:
    return (
        f"Checked like inbound attachments: the type is sniffed from the bytes and must be one of "
        f"{', '.join(allowed_types)}; the file may be at most {max_file_bytes:,} bytes; images are "
        "re-encoded (metadata removed). With `convert` (query or body), images in types carriers refuse "
        "(BMP, TIFF...) become PNG or JPEG and images over the limit are scaled down; sources may then "
        f"be up to {CONVERT_INPUT_FACTOR * max_file_bytes:,} bytes. The request body may be at most "
        f"{max_body_bytes(max_file_bytes):,} bytes ({max_body_bytes(CONVERT_INPUT_FACTOR * max_file_bytes):,} with "
        "`?convert=true`)."
    )


def _errors(*statuses: int, descriptions: Mapping[int, str] = _ERROR_DESCRIPTIONS) -> dict[int, Answer]:
    return {
        status: Answer(descriptions[status], response_models.Error, _ERROR_HEADERS.get(status, {}))
        for status in statuses
    }


# Push delivery: the endpoints API (api/endpoints.py) ------------------------------------------------


def _endpoint_operations() -> list[Operation]:
    models = endpoint_models
    path = "/api/v1/endpoints/{endpointId}"
    one = models.EndpointPath
    json_body = "application/json"
    return [
        Operation(
            "POST",
            "/api/v1/endpoints",
            "createEndpoint",
            "endpoints",
            "Register a URL that every event of the tenant (or of the types named) is POSTed to.",
            {
                201: Answer(
                    "Registered; the answer shows the signing secret, only this once.",
                    models.EndpointWithSecret,
                    {"Location": {"schema": _STRING, "description": "The endpoint's URL in this API."}},
                ),
                **_endpoint_errors(400, 401, 409, 413, 503),
            },
            bodies={json_body: models.EndpointCreate},
            description=_ENDPOINT_DESCRIPTION,
        ),
        Operation(
            "GET",
            "/api/v1/endpoints",
            "listEndpoints",
            "endpoints",
            "The tenant's endpoints.",
            {200: Answer("The endpoints.", models.EndpointList), **_endpoint_errors(401, 503)},
        ),
        Operation(
            "GET",
            path,
            "getEndpoint",
            "endpoints",
            "One endpoint.",
            {200: Answer("The endpoint.", models.Endpoint), **_endpoint_errors(401, 404, 503)},
            path_parameters=one,
        ),
        Operation(
            "PATCH",
            path,
            "updateEndpoint",
            "endpoints",
            "Change an endpoint: only the fields given change.",
            {
                200: Answer("The endpoint as changed.", models.Endpoint),
                **_endpoint_errors(400, 401, 404, 409, 413, 503),
            },
            bodies={json_body: models.EndpointUpdate},
            description=(
                "Disabling gives up its pending deliveries; enabling again starts at the end of the event feed "
                "(replay recovers what it missed). A new URL is checked as at registration."
            ),
            path_parameters=one,
        ),
        Operation(
            "DELETE",
            path,
            "deleteEndpoint",
            "endpoints",
            "Remove an endpoint and its history.",
            {204: Answer("Removed."), **_endpoint_errors(401, 404, 409, 503)},
            path_parameters=one,
        ),
        Operation(
            "POST",
            f"{path}/rotate-secret",
            "rotateEndpointSecret",
            "endpoints",
            "A new signing secret; for 24 hours deliveries are signed with both the old and the new one.",
            {
                200: Answer("The new secret, shown only this once.", models.RotatedEndpoint),
                **_endpoint_errors(401, 404, 409, 503),
            },
            path_parameters=one,
        ),
        Operation(
            "GET",
            f"{path}/attempts",
            "listEndpointAttempts",
            "endpoints",
            "The endpoint's delivery attempts, newest first: HTTP status or error, latency, the answer's first KiB.",
            {200: Answer("A page of attempts.", models.AttemptPage), **_endpoint_errors(400, 401, 404, 503)},
            query=models.AttemptQuery,
            path_parameters=one,
        ),
        Operation(
            "POST",
            f"{path}/replay",
            "replayEndpointEvents",
            "endpoints",
            "Deliver events again: every one since a time, or those named (with the same webhook-id as before).",
            {202: Answer("Queued for delivery.", models.ReplayResult), **_endpoint_errors(400, 401, 404, 413, 503)},
            bodies={json_body: models.ReplayRequest},
            path_parameters=one,
        ),
    ]


def _endpoint_errors(*statuses: int) -> dict[int, Answer]:
    return _errors(*statuses, descriptions=_ENDPOINT_ERROR_DESCRIPTIONS)


_ENDPOINT_DESCRIPTION = (
    "Each event is POSTed as `{type, timestamp, data}`, `data` being the object as this API returns it, "
    "with the Standard Webhooks headers `webhook-id` (the same for every attempt of one event to one "
    "endpoint), `webhook-timestamp` and `webhook-signature`. Non-2xx answers are retried on a schedule; "
    "410 Gone disables the endpoint. The URL must be https and reach a public address (the service's "
    "configuration may allow http and private networks); loopback, private, link-local and metadata "
    "addresses and URLs with credentials are refused."
)
