"""The request log (/console/requests): every webhook request with filters and pages, and one request's
page: what it was answered and why, its headers (every secret redacted) and body, how it was verified,
and what it produced."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, request
from werkzeug.wrappers import Response

from webhook_service.console import params
from webhook_service.console.body_view import body_view
from webhook_service.console.context import Console
from webhook_service.console.rendering import content_type, error_page, page, shown_headers
from webhook_service.database.quarantine import body_was_kept
from webhook_service.database.request_log import (
    OUTCOMES,
    RequestLogFilter,
    kept_request,
    produced_events,
    request_log_entries,
    request_log_entry,
)
from webhook_service.database.tables import QuarantinedRequest, RawRequest, RequestLogEntry


def register(blueprint: Blueprint, console: Console) -> None:
    parts = console.parts
    region = parts.settings.phone_default_region

    @blueprint.get("/requests")
    def requests() -> Response:
        args = request.args
        where = RequestLogFilter(
            provider=params.text(args, "provider"),
            connection=params.text(args, "connection"),
            outcome=params.choice(args, "outcome", OUTCOMES),
            since=params.moment(args, "since"),
            until=params.moment(args, "until"),
            request_id=params.text(args, "request_id"),
            provider_message_id=params.text(args, "provider_message_id"),
            address=params.address(args, "number", region),
        )
        entries, next_before = request_log_entries(
            parts.db,
            tenants=console.operator().tenants,
            where=where,
            before=params.position(args, "before"),
            limit=params.PAGE_SIZE,
        )
        return page("requests.html", entries=entries, next_before=next_before, outcomes=OUTCOMES)

    @blueprint.get(f"/requests/<{params.ROW_ID}:entry_id>")
    def request_page(entry_id: int) -> Response:
        entry = request_log_entry(parts.db, entry_id, tenants=console.operator().tenants)
        if entry is None:
            return error_page(404, "Not found")
        kept = kept_request(parts.db, entry)
        return page(
            "request.html",
            entry=entry,
            kept=kept,
            headers=shown_headers(kept.headers if kept is not None else entry.headers or []),
            body=body_view(kept.body, content_type(kept.headers)) if kept is not None else None,
            verification=verification(entry),
            events=produced_events(parts.db, entry),
            replayable=isinstance(kept, QuarantinedRequest) and body_was_kept(kept),
        )

    @blueprint.get(f"/requests/<{params.ROW_ID}:entry_id>/body")
    def request_body(entry_id: int) -> Response:
        entry = request_log_entry(parts.db, entry_id, tenants=console.operator().tenants)
        kept = kept_request(parts.db, entry) if entry is not None else None
        if kept is None:
            return error_page(404, "Not found", "This request's body is not kept (or no longer: see retention_days).")
        return body_download(kept, f"request-{entry_id}")


def body_download(kept: RawRequest | QuarantinedRequest, name: str) -> Response:
    """The body exactly as received, as a download that no browser renders."""
    response = Response(kept.body, mimetype="application/octet-stream")
    response.headers["Content-Disposition"] = f'attachment; filename="{name}.bin"'
    return response


def verification(entry: RequestLogEntry) -> dict[str, Any]:
    """How the request was checked, in words, from its outcome and reason."""
    if entry.outcome in ("accepted", "duplicate"):
        how = "trusted by the operator who replayed it" if entry.replay_of else "verified"
        return {"state": "ok", "text": f"Genuine: {how}, parsed and stored."}
    if entry.outcome == "unauthorized":
        return {"state": "failed", "text": f"Not verified ({entry.reason_code}): answered 401, kept in quarantine."}
    if entry.outcome == "bad_request":
        return {
            "state": "failed",
            "text": f"Verified, but its body could not be read ({entry.reason_code}): answered 400.",
        }
    if entry.outcome == "too_large":
        return {"state": "failed", "text": "Not checked: its body was over the size limit (413)."}
    if entry.outcome == "not_found":
        return {"state": "failed", "text": f"Not checked: no connection answers this URL ({entry.reason_code})."}
    if entry.outcome == "unavailable":
        return {"state": "failed", "text": "Verified, but the database did not answer: 503, for the provider to retry."}
    return {"state": "failed", "text": f"Refused ({entry.reason_code})."}
