"""GET /openapi.json: the OpenAPI 3.0 description of the read API (api/messages.py) and the media API
(api/media.py), written as data. The test suite runs schemathesis against it, so it must say exactly
what the code answers, error codes included."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app

from webhook_service.api.read_params import DEFAULT_EVENTS, DEFAULT_PAGE, MAX_EVENTS, MAX_PAGE
from webhook_service.api.upload_body import max_body_bytes
from webhook_service.config.model import DEFAULT_PHONE_NUMBER, DEFAULT_TENANT_ID
from webhook_service.database import feed
from webhook_service.database.tables import ATTACHMENT_STATES
from webhook_service.model import statuses

Schema = dict[str, Any]


def openapi_blueprint(*, max_file_bytes: int, allowed_types: list[str]) -> Blueprint:
    blueprint = Blueprint("openapi", __name__)
    spec = build_spec(max_file_bytes=max_file_bytes, allowed_types=sorted(allowed_types))

    @blueprint.get("/openapi.json")
    def openapi_json():
        return current_app.json.response(spec)

    return blueprint


def build_spec(*, max_file_bytes: int, allowed_types: list[str]) -> dict[str, Any]:
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "SMS/MMS webhook service: read and media APIs",
            "version": "1",
            "description": (
                "Read normalized messages and the event feed, and upload media for outbound MMS. "
                "Authenticate with HTTP Basic (as in the provider documentation's examples) or a bearer "
                "API key; everything is scoped to the caller's tenant, and another tenant's objects are "
                'answered 404. Errors are `{"error": {"code", "message"}}`.'
            ),
        },
        "security": [{"basicAuth": []}, {"bearerAuth": []}],
        "paths": {
            "/api/v1/messages": {"get": _list_messages()},
            "/api/v1/messages/{messageId}": {"get": _get_message()},
            "/api/v1/providers/{provider}/messages/{providerMessageId}": {"get": _get_message_by_provider_id()},
            "/api/v1/events": {"get": _list_events()},
            "/api/v1/media": {"post": _upload_media(max_file_bytes, allowed_types)},
            "/api/v1/media/{mediaId}": {"get": _get_media(), "delete": _delete_media()},
            "/m/{mediaId}": {"get": _follow_stable_url()},
        },
        "components": {
            "securitySchemes": {
                "basicAuth": {"type": "http", "scheme": "basic"},
                "bearerAuth": {"type": "http", "scheme": "bearer", "description": "An API key."},
            },
            "schemas": _schemas(),
        },
    }


# Operations ------------------------------------------------------------------------------------------


def _list_messages() -> dict[str, Any]:
    return {
        "operationId": "listMessages",
        "tags": ["messages"],
        "summary": "Messages, newest first, with filters and cursor pagination.",
        "parameters": [
            _query("direction", {"type": "string", "enum": ["inbound", "outbound"]}),
            _query("status", {"type": "string", "enum": sorted(statuses.CANONICAL)}),
            _query("provider", _STRING),
            _query("connection", _STRING),
            _query("providerMessageId", _STRING),
            _query("from", _STRING, "Sender; phone numbers in any format are normalized to E.164."),
            _query("to", _STRING, "A recipient; normalized like `from`."),
            _query("since", {"type": "string", "format": "date-time"}, "Received at or after (ISO 8601)."),
            _query("until", {"type": "string", "format": "date-time"}, "Received before (ISO 8601)."),
            _query("limit", {"type": "integer", "minimum": 1, "maximum": MAX_PAGE, "default": DEFAULT_PAGE}),
            _query("cursor", {"type": "string", "pattern": "^[0-9]{1,18}$"}, "The `nextCursor` of the previous page."),
        ],
        "responses": {"200": _json_response("A page of messages.", _ref("MessagePage")), **_errors(400, 401)},
    }


def _get_message() -> dict[str, Any]:
    return {
        "operationId": "getMessage",
        "tags": ["messages"],
        "summary": "One message by its id.",
        "parameters": [_path("messageId")],
        "responses": {"200": _json_response("The message.", _ref("Message")), **_errors(401, 404)},
    }


def _get_message_by_provider_id() -> dict[str, Any]:
    return {
        "operationId": "getMessageByProviderId",
        "tags": ["messages"],
        "summary": "One message by its provider and the provider's message id.",
        "parameters": [_path("provider"), _path("providerMessageId")],
        "responses": {"200": _json_response("The message.", _ref("Message")), **_errors(401, 404)},
    }


def _list_events() -> dict[str, Any]:
    return {
        "operationId": "listEvents",
        "tags": ["events"],
        "summary": "The ordered event feed: pass `nextCursor` back as `after`; an empty page means caught up.",
        "parameters": [
            _query("after", {"type": "string", "pattern": "^[0-9]{1,18}$", "default": "0"}),
            _query("limit", {"type": "integer", "minimum": 1, "maximum": MAX_EVENTS, "default": DEFAULT_EVENTS}),
            _query("type", _STRING, f"Comma-separated event types: {', '.join(feed.TYPES)}."),
        ],
        "responses": {"200": _json_response("A page of events.", _ref("EventPage")), **_errors(400, 401)},
    }


def _upload_media(max_file_bytes: int, allowed_types: list[str]) -> dict[str, Any]:
    return {
        "operationId": "uploadMedia",
        "tags": ["media"],
        "summary": "Upload a file to send by MMS; the answer's `uri`/`url` goes into `mediaUrls`.",
        "description": (
            f"Checked like inbound attachments: the type is sniffed from the bytes and must be one of "
            f"{', '.join(allowed_types)}; the file may be at most {max_file_bytes:,} bytes; images are "
            "re-encoded (metadata removed). With `convert` (query or body), images in types carriers refuse "
            "(BMP, TIFF...) become PNG or JPEG and images over the limit are scaled down; sources may then "
            f"be up to {4 * max_file_bytes:,} bytes. The request body may be at most "
            f"{max_body_bytes(max_file_bytes):,} bytes ({max_body_bytes(4 * max_file_bytes):,} with "
            "`?convert=true`)."
        ),
        "parameters": [
            _query(
                "convert", {"type": "boolean"}, "Convert images carriers refuse and scale down images over the limit."
            )
        ],
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": _ref("UploadRequest"), "example": _UPLOAD_EXAMPLE},
                "multipart/form-data": {"schema": _ref("MultipartUploadRequest")},
            },
        },
        "responses": {
            "201": {
                **_json_response("Stored.", _ref("Upload")),
                "headers": {"Location": {"schema": _STRING, "description": "The upload's metadata URL."}},
            },
            **_errors(400, 401, 403, 413, 415, 422, 503),
        },
    }


def _get_media() -> dict[str, Any]:
    return {
        "operationId": "getMedia",
        "tags": ["media"],
        "summary": "An upload's metadata, with a freshly signed URL.",
        "parameters": [_path("mediaId")],
        "responses": {"200": _json_response("The upload.", _ref("Upload")), **_errors(401, 404, 503)},
    }


def _delete_media() -> dict[str, Any]:
    return {
        "operationId": "deleteMedia",
        "tags": ["media"],
        "summary": "Delete an upload: its signed URLs stop working and its stable URL answers 410.",
        "parameters": [_path("mediaId")],
        "responses": {"204": {"description": "Deleted."}, **_errors(401, 404, 503)},
    }


def _follow_stable_url() -> dict[str, Any]:
    return {
        "operationId": "followStableMediaUrl",
        "tags": ["media"],
        "summary": "An upload's stable URL (`stableUrl`): a redirect to a freshly signed URL of the file.",
        "security": [],
        "parameters": [
            _path("mediaId"),
            {"name": "sig", "in": "query", "required": True, "schema": _STRING},
            _query("expires", _STRING, "Present when stable URLs are configured to expire."),
        ],
        "responses": {
            "302": {
                "description": "Redirect to the file's signed URL.",
                "headers": {"Location": {"required": True, "schema": _STRING}},
            },
            **_errors(403, 404, 410),
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


# Schemas ---------------------------------------------------------------------------------------------

_STRING: Schema = {"type": "string"}
_NULLABLE_STRING: Schema = {"type": "string", "nullable": True}
_NULLABLE_TIME: Schema = {"type": "string", "format": "date-time", "nullable": True}
_TIME: Schema = {"type": "string", "format": "date-time"}
_FILE_DATA: Schema = {
    "description": "The file: base64 (a `data:<type>;base64,` prefix, line breaks and missing padding are "
    "accepted) or an array of byte values.",
    "oneOf": [
        {"type": "string", "format": "byte"},
        {"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 255}},
    ],
}


def _schemas() -> dict[str, Schema]:
    return {
        "Error": _object(
            {"error": _object({"code": _STRING, "message": _STRING}, required=["code", "message"])}, required=["error"]
        ),
        "StatusEvent": _object(
            {
                "status": _STRING,
                "providerStatus": _STRING,
                "errorCode": _NULLABLE_STRING,
                "errorMessage": _NULLABLE_STRING,
                "occurredAt": _NULLABLE_TIME,
                "receivedAt": _TIME,
                "applied": {"type": "boolean"},
            }
        ),
        "Attachment": _object(
            {
                "id": _STRING,
                "index": {"type": "integer"},
                "name": _NULLABLE_STRING,
                "declaredContentType": _NULLABLE_STRING,
                "contentType": _NULLABLE_STRING,
                "size": {"type": "integer", "nullable": True},
                "sha256": _NULLABLE_STRING,
                "status": {"type": "string", "enum": list(ATTACHMENT_STATES)},
                "reasonCode": _NULLABLE_STRING,
                "reason": _NULLABLE_STRING,
                "attempts": {"type": "integer"},
                "url": {**_NULLABLE_STRING, "description": "Signed; present once the attachment is stored."},
            }
        ),
        "Message": _object(
            {
                "id": _STRING,
                "provider": _STRING,
                "connection": _STRING,
                "tenantId": _STRING,
                "providerMessageId": _STRING,
                "direction": {"type": "string", "enum": ["inbound", "outbound"]},
                "from": _NULLABLE_STRING,
                "to": {"type": "array", "items": _STRING},
                "text": _NULLABLE_STRING,
                "subject": _NULLABLE_STRING,
                "status": _NULLABLE_STRING,
                "providerStatus": _NULLABLE_STRING,
                "statusUpdatedAt": _NULLABLE_TIME,
                "occurredAt": _NULLABLE_TIME,
                "receivedAt": _TIME,
                "hasContent": {"type": "boolean"},
                "extra": {"type": "object"},
                "attachments": {"type": "array", "items": _ref("Attachment")},
                "statusHistory": {"type": "array", "items": _ref("StatusEvent")},
            }
        ),
        "MessagePage": _object(
            {
                "messages": {"type": "array", "items": _ref("Message")},
                "nextCursor": {**_NULLABLE_STRING, "description": "Null on the last page."},
            },
            required=["messages", "nextCursor"],
        ),
        "Event": _object(
            {
                "id": _STRING,
                "type": {"type": "string", "enum": list(feed.TYPES)},
                "createdAt": _TIME,
                "data": {"type": "object"},
            }
        ),
        "EventPage": _object(
            {"events": {"type": "array", "items": _ref("Event")}, "nextCursor": _STRING},
            required=["events", "nextCursor"],
        ),
        "UploadRequest": _object(
            {
                "phoneNumber": {**_STRING, "description": "The sending number, E.164; one of the tenant's."},
                "phoneNumberId": {**_STRING, "description": "Or the sending number's id."},
                "fileName": {**_STRING, "description": "A plain file name; shown in Content-Disposition only."},
                "contentType": {**_STRING, "description": "The declared type (recorded; the sniffed type wins)."},
                "mimeType": {**_STRING, "description": "Seed 000's name for contentType."},
                "tenantId": {**_STRING, "description": "Optional; must be the caller's tenant."},
                "data": _FILE_DATA,
                "content": {**_FILE_DATA, "description": "Seed 000's name for data."},
                "convert": {"type": "boolean", "description": "Convert images carriers refuse; scale down large ones."},
            },
            required=["fileName"],
            description="Seed 001's shape (phoneNumber, data) or seed 000's "
            "(phoneNumberId, content); unknown fields are ignored.",
        ),
        "MultipartUploadRequest": _object(
            {
                "file": {"type": "string", "format": "binary"},
                "phoneNumber": _STRING,
                "phoneNumberId": _STRING,
                "fileName": _STRING,
                "contentType": _STRING,
                "mimeType": _STRING,
                "tenantId": _STRING,
                "convert": {"type": "boolean"},
            },
            required=["file"],
            description="fileName and contentType default to the file part's own.",
        ),
        "Upload": _object(
            {
                "id": _STRING,
                "uri": {**_STRING, "description": "The signed URL to put in mediaUrls (seed 001's name)."},
                "url": {**_STRING, "description": "The same URL (seed 000's name)."},
                "expiresAt": {**_TIME, "description": "When uri/url stop working."},
                "stableUrl": {
                    **_STRING,
                    "description": "A link on this service that redirects to a fresh signed "
                    "URL; works until the upload is deleted.",
                },
                "stableUrlExpiresAt": {**_NULLABLE_TIME, "description": "Null: until deleted."},
                "fileName": _STRING,
                "contentType": {**_STRING, "description": "The stored (sniffed) type."},
                "mimeType": {**_STRING, "description": "The same type (seed 000's name)."},
                "declaredContentType": _NULLABLE_STRING,
                "size": {"type": "integer"},
                "sha256": _STRING,
                "phoneNumber": _STRING,
                "phoneNumberId": _STRING,
                "tenantId": _STRING,
                "createdAt": _TIME,
                "warnings": {
                    "type": "array",
                    "items": _STRING,
                    "description": "For example: the declared type differs from the stored one.",
                },
            },
            required=[
                "id",
                "uri",
                "url",
                "expiresAt",
                "stableUrl",
                "fileName",
                "contentType",
                "mimeType",
                "size",
                "sha256",
                "warnings",
            ],
        ),
    }


# Helpers ---------------------------------------------------------------------------------------------

_ERROR_DESCRIPTIONS = {
    400: "The request is malformed (the error code says how).",
    401: "Credentials are missing or wrong.",
    403: "Not the caller's tenant or phone number, or a signed link that is invalid or expired.",
    404: "No such object (or another tenant's).",
    410: "The upload was deleted.",
    413: "The file (or the request) is too large: Media file exceeds maximum size of 5MB.",
    415: "The file's type is not allowed: Unsupported media type: image/bmp.",
    422: "An image over the pixel limit, or one that cannot be decoded.",
    503: "The database or the media store is unavailable; retry.",
}


def _errors(*statuses_: int) -> dict[str, Any]:
    return {str(status): _json_response(_ERROR_DESCRIPTIONS[status], _ref("Error")) for status in statuses_}


def _json_response(description: str, schema: Schema) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _object(
    properties: dict[str, Schema], *, required: list[str] | None = None, description: str | None = None
) -> Schema:
    schema: Schema = {
        "type": "object",
        "properties": properties,
        "required": required if required is not None else list(properties),
    }
    if description:
        schema["description"] = description
    return schema


def _query(name: str, schema: Schema, description: str | None = None) -> dict[str, Any]:
    parameter = {"name": name, "in": "query", "required": False, "schema": schema}
    if description:
        parameter["description"] = description
    return parameter


def _path(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": _STRING}
