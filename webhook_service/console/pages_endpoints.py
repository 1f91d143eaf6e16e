"""Push delivery (/console/endpoints): the endpoints of the operator's tenants, each with its health, its
backlog, its last attempt and its deliveries per state; a page per endpoint with its deliveries (newest
event first, filtered by state and event type) and every attempt of each; and the actions, through
delivery/'s own operations: resend one delivery (the API's replay of one event: the same webhook-id),
retry every failed delivery (as `webhook-service deliveries retry --all-failed --endpoint`), and enable
again an endpoint the service disabled. Admins only, within console.action_limit_per_operator; audited."""

from __future__ import annotations

from collections import defaultdict

from flask import Blueprint, flash, redirect, request, url_for
from werkzeug.wrappers import Response

from webhook_service.console import params
from webhook_service.console.context import Console
from webhook_service.console.rendering import error_page, page
from webhook_service.database import feed
from webhook_service.database.tables import DELIVERY_STATES
from webhook_service.delivery.endpoints import DISABLED_BY_OWNER, EndpointNotFound, NotReenabled
from webhook_service.delivery.engine import webhook_id
from webhook_service.delivery.history import (
    DeliveryFilter,
    attempt_rows,
    endpoint_delivery,
    failed_ids,
    list_deliveries,
    retry_failed,
)
from webhook_service.delivery.overview import EndpointOverview, endpoint_overview, endpoint_overviews

# Failed deliveries one click retries; the rest wait for the next (one statement for all of them).
RETRY_LIMIT = 1000
# Attempts one page shows at most (a delivery has a few; a page, at most 50 deliveries).
ATTEMPTS_SHOWN = 1000


def register(blueprint: Blueprint, console: Console) -> None:
    parts = console.parts

    def endpoint_in_scope(endpoint_id: str) -> EndpointOverview | None:
        return endpoint_overview(parts.db, params.row_key(endpoint_id), tenants=console.operator().tenants)

    def back_to(endpoint_id: str) -> Response:
        return redirect(url_for("console.endpoint_page", endpoint_id=endpoint_id), 303)

    @blueprint.get("/endpoints")
    def endpoints() -> Response:
        return page("endpoints.html", overviews=endpoint_overviews(parts.db, tenants=console.operator().tenants))

    @blueprint.get("/endpoints/<endpoint_id>")
    def endpoint_page(endpoint_id: str) -> Response:
        args = request.args
        state = params.choice(args, "state", DELIVERY_STATES)
        event_type = params.choice(args, "type", feed.TYPES)
        before = params.position(args, "before")
        overview = endpoint_in_scope(endpoint_id)
        if overview is None:
            return error_page(404, "Not found")
        endpoint = overview.endpoint
        where = DeliveryFilter(
            endpoint_id=endpoint.id, statuses=(state,) if state else DELIVERY_STATES, event_type=event_type
        )
        rows = list_deliveries(parts.db, where, params.PAGE_SIZE + 1, before_event=before)
        deliveries = rows[: params.PAGE_SIZE]
        attempts = defaultdict(list)
        if deliveries:
            for attempt in attempt_rows(
                parts.db, endpoint.id, limit=ATTEMPTS_SHOWN, event_ids=[row.event_id for row in deliveries]
            ):
                attempts[attempt.event_id].append(attempt)
        return page(
            "endpoint.html",
            overview=overview,
            endpoint=endpoint,
            deliveries=deliveries,
            attempts=attempts,
            webhook_id=webhook_id,
            disabled_by_owner=endpoint.disabled_reason == DISABLED_BY_OWNER,
            next_before=deliveries[-1].event_id if len(rows) > params.PAGE_SIZE else None,
            states=DELIVERY_STATES,
            event_types=feed.TYPES,
        )

    @blueprint.post(f"/endpoints/<endpoint_id>/deliveries/<{params.ROW_ID}:delivery_id>/resend")
    def resend_delivery(endpoint_id: str, delivery_id: int) -> Response:
        overview = endpoint_in_scope(endpoint_id)
        delivery = endpoint_delivery(parts.db, overview.endpoint.id, delivery_id) if overview else None
        if overview is None or delivery is None:
            return error_page(404, "Not found")
        endpoint = overview.endpoint
        refused = console.refusal("resend", "delivery", str(delivery_id), endpoint.tenant_id)
        if refused is not None:
            return refused
        about = f"event {delivery.event_id} ({delivery.event_type}) to endpoint {endpoint.id}"
        if not endpoint.enabled:
            result, detail = "refused", f"{about}: the endpoint is disabled; enable it first"
        elif delivery.status == "pending":
            result, detail = "refused", f"{about}: it is pending, its next attempt is on its way"
        else:
            try:
                resent = parts.endpoints.replay(
                    endpoint.tenant_id, endpoint.id, since=None, event_ids=[delivery.event_id]
                )
            except EndpointNotFound:
                return error_page(404, "Not found")
            if resent:
                result = "ok"
                detail = f"{about}: queued to be sent again as {webhook_id(delivery.event_id, endpoint.id)}"
            else:
                result, detail = "refused", f"{about}: not resent, its type is no longer one the endpoint takes"
        console.audit([console.action("resend", "delivery", str(delivery_id), endpoint.tenant_id, result, detail)])
        flash(f"Delivery {delivery_id}, {detail}.", "ok" if result == "ok" else "error")
        return back_to(endpoint.id)

    @blueprint.post("/endpoints/<endpoint_id>/retry-failed")
    def retry_failed_deliveries(endpoint_id: str) -> Response:
        overview = endpoint_in_scope(endpoint_id)
        if overview is None:
            return error_page(404, "Not found")
        endpoint = overview.endpoint
        refused = console.refusal("retry_failed", "endpoint", endpoint.id, endpoint.tenant_id)
        if refused is not None:
            return refused
        if not endpoint.enabled:
            result, detail = "refused", "the endpoint is disabled; enable it first"
        else:
            ids = failed_ids(parts.db, endpoint.id, limit=RETRY_LIMIT)
            reset = retry_failed(parts.db, ids) if ids else []
            parts.endpoints.wake(sorted(set(reset)))
            result = "ok" if reset else "refused"
            detail = f"{len(reset)} failed deliveries queued for another attempt, with a fresh retry budget"
            if len(ids) == RETRY_LIMIT:
                detail += f" (at most {RETRY_LIMIT} a click: retry again for the rest)"
        console.audit([console.action("retry_failed", "endpoint", endpoint.id, endpoint.tenant_id, result, detail)])
        flash(f"Endpoint {endpoint.url}: {detail}.", "ok" if result == "ok" else "error")
        return back_to(endpoint.id)

    @blueprint.post("/endpoints/<endpoint_id>/enable")
    def enable_endpoint(endpoint_id: str) -> Response:
        overview = endpoint_in_scope(endpoint_id)
        if overview is None:
            return error_page(404, "Not found")
        endpoint = overview.endpoint
        refused = console.refusal("enable", "endpoint", endpoint.id, endpoint.tenant_id)
        if refused is not None:
            return refused
        try:
            parts.endpoints.reenable(endpoint.tenant_id, endpoint.id)
        except EndpointNotFound:
            return error_page(404, "Not found")
        except NotReenabled as error:
            result, detail = "refused", f"not enabled: {error}"
        else:
            result = "ok"
            detail = f"enabled again (it was disabled: {endpoint.disabled_reason}); it takes the events from now on"
        console.audit([console.action("enable", "endpoint", endpoint.id, endpoint.tenant_id, result, detail)])
        flash(f"Endpoint {endpoint.url}: {detail}.", "ok" if result == "ok" else "error")
        return back_to(endpoint.id)
