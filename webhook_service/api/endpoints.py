"""The endpoints API: consumers register the URLs that events are pushed to (delivery/), see how each
attempt went, and replay. Tenant-scoped like the read API: another tenant's endpoint is not found.

    POST   /api/v1/endpoints                          register; the answer shows the secret, once
    GET    /api/v1/endpoints[/<id>]                   list, one
    PATCH  /api/v1/endpoints/<id>                     url, eventTypes, description, enabled, rateLimitPerSecond
    DELETE /api/v1/endpoints/<id>
    POST   /api/v1/endpoints/<id>/rotate-secret       a new secret; the old one keeps signing for a day
    GET    /api/v1/endpoints/<id>/attempts            newest first, cursor-paged
    POST   /api/v1/endpoints/<id>/replay              {"since": time} or {"eventIds": [...]}

Bodies are JSON objects checked by api/endpoint_models.py (unknown fields refused); URLs by the SSRF
rules (delivery/urls.py)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, TypeVar

from flask import Blueprint, Response, jsonify, request
from pydantic import BaseModel, ValidationError

from webhook_service.api.auth import ApiAuthenticator, current_principal
from webhook_service.api.endpoint_models import (
    AttemptQuery,
    EndpointCreate,
    EndpointPath,
    EndpointUpdate,
    ReplayEvents,
    ReplaySince,
)
from webhook_service.api.errors import ApiError
from webhook_service.api.parameters import validated
from webhook_service.database.tables import storable
from webhook_service.delivery.endpoints import (
    EndpointChanges,
    EndpointNotFound,
    EndpointStore,
    ManagedByConfiguration,
    TooManyEndpoints,
)
from webhook_service.network.targets import OutboundError

# An endpoint's settings fit in far less; a larger body is a mistake or an attack.
MAX_BODY_BYTES = 64 * 1024

Body = TypeVar("Body", bound=BaseModel)


def endpoints_api_blueprint(store: EndpointStore, auth: ApiAuthenticator) -> Blueprint:
    blueprint = Blueprint("endpoints_api", __name__, url_prefix="/api/v1/endpoints")

    @blueprint.post("")
    @auth.required
    def create_endpoint():
        body = _body(EndpointCreate)
        try:
            created = store.create(
                current_principal().tenant_id,
                url=body.url,
                event_types=list(body.eventTypes),
                description=body.description,
                rate_limit_per_second=body.rateLimitPerSecond,
            )
        except OutboundError as error:
            raise _refused_url(error) from None
        except TooManyEndpoints as error:
            raise ApiError(409, "too_many_endpoints", str(error)) from None
        response = jsonify(created)
        response.status_code = 201
        response.headers["Location"] = f"/api/v1/endpoints/{created['id']}"
        return response

    @blueprint.get("")
    @auth.required
    def list_endpoints():
        return {"endpoints": store.for_tenant(current_principal().tenant_id)}

    @blueprint.get("/<endpointId>")
    @auth.required
    def get_endpoint(**path_values: str):
        with _errors():
            return store.get(current_principal().tenant_id, _endpoint_id(path_values))

    @blueprint.patch("/<endpointId>")
    @auth.required
    def update_endpoint(**path_values: str):
        endpoint_id = _endpoint_id(path_values)
        body = _body(EndpointUpdate)
        given = body.model_fields_set
        changes = EndpointChanges(
            url=body.url,
            event_types=list(body.eventTypes) if body.eventTypes is not None else None,
            description=body.description,
            enabled=body.enabled,
            rate_limit_per_second=body.rateLimitPerSecond,
            clear=frozenset(
                name
                for field, name in (("description", "description"), ("rateLimitPerSecond", "rate_limit_per_second"))
                if field in given and getattr(body, field) is None
            ),
        )
        with _errors():
            return store.update(current_principal().tenant_id, endpoint_id, changes)

    @blueprint.delete("/<endpointId>")
    @auth.required
    def delete_endpoint(**path_values: str):
        with _errors():
            store.delete(current_principal().tenant_id, _endpoint_id(path_values))
        return Response(status=204)

    @blueprint.post("/<endpointId>/rotate-secret")
    @auth.required
    def rotate_secret(**path_values: str):
        with _errors():
            return store.rotate_secret(current_principal().tenant_id, _endpoint_id(path_values))

    @blueprint.get("/<endpointId>/attempts")
    @auth.required
    def list_attempts(**path_values: str):
        endpoint_id = _endpoint_id(path_values)
        asked = validated(AttemptQuery, request.args)
        with _errors():
            attempts, next_cursor = store.attempts(
                current_principal().tenant_id,
                endpoint_id,
                before=int(asked.cursor) if asked.cursor else None,
                limit=asked.limit,
                event_id=int(asked.event_id) if asked.event_id else None,
            )
        return {"attempts": attempts, "nextCursor": next_cursor}

    @blueprint.post("/<endpointId>/replay")
    @auth.required
    def replay(**path_values: str):
        endpoint_id = _endpoint_id(path_values)
        data = _json_object()
        if ("since" in data) == ("eventIds" in data):
            raise ApiError(400, "invalid_field", "Give exactly one of since and eventIds.")
        asked = _validated(ReplaySince if "since" in data else ReplayEvents, data)
        with _errors():
            count = store.replay(
                current_principal().tenant_id,
                endpoint_id,
                since=asked.since if isinstance(asked, ReplaySince) else None,
                event_ids=[int(event_id) for event_id in asked.eventIds] if isinstance(asked, ReplayEvents) else [],
            )
        response = jsonify({"replayed": count})
        response.status_code = 202
        return response

    return blueprint


def _endpoint_id(path_values: dict[str, str]) -> str:
    # An id the database cannot hold (a NUL, a lone surrogate) is no endpoint's: with U+FFFD in their
    # place it is not found (404), as in the console, where the query failed with a 500.
    return storable(validated(EndpointPath, path_values).endpoint_id)


def _body(model: type[Body]) -> Body:
    """The request's JSON object checked by `model`; 400 with the first refused field's message."""
    return _validated(model, _json_object())


def _json_object() -> dict[str, Any]:
    request.max_content_length = MAX_BODY_BYTES
    data = request.get_json(silent=True) if request.is_json else None
    if not isinstance(data, dict):
        raise ApiError(400, "invalid_json", "The body must be a JSON object, sent as application/json.")
    return data


def _validated(model: type[Body], data: dict[str, Any]) -> Body:
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise ApiError(400, "invalid_field", _message(error.errors()[0])) from None


def _message(error: Any) -> str:
    if error["type"] == "invalid_field":
        return str(error["ctx"]["message"])
    location = ".".join(str(part) for part in error["loc"]) or "body"
    if error["type"] == "extra_forbidden":
        return f"{location}: not a field of this request"
    if error["type"] == "missing":
        return f"{location}: required"
    return f"{location}: {error['msg']}"


def _refused_url(error: OutboundError) -> ApiError:
    return ApiError(400, "endpoint_url_refused", error.message)


@contextlib.contextmanager
def _errors() -> Iterator[None]:
    """The store's refusals as API answers."""
    try:
        yield
    except EndpointNotFound:
        raise ApiError(404, "not_found", "No such endpoint.") from None
    except ManagedByConfiguration:
        raise ApiError(
            409, "managed_by_configuration", "This endpoint is declared in the configuration; change it there."
        ) from None
    except OutboundError as error:
        raise _refused_url(error) from None
