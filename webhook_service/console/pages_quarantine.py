"""Quarantine (/console/quarantine): the refused requests, one entry's page, and the actions on them:
replay (its signature checked again, or trusted: as `webhook-service quarantine replay [--trust]`) and
discard, one at a time or on the entries ticked or all those a filter selects. Admins only; every action
is audited."""

from __future__ import annotations

from collections.abc import Iterable

from flask import Blueprint, flash, redirect, request, url_for
from werkzeug.wrappers import Response

from webhook_service.console import params
from webhook_service.console.body_view import body_view
from webhook_service.console.context import Console
from webhook_service.console.pages_requests import body_download
from webhook_service.console.rendering import content_type, error_page, page, shown_headers
from webhook_service.database.audit import Action
from webhook_service.database.quarantine import (
    QuarantineFilter,
    body_was_kept,
    count_quarantined,
    quarantine_entries,
    quarantine_entry,
    quarantine_ids,
    resolve_entry,
)
from webhook_service.database.request_log import log_entry_for_request_id
from webhook_service.database.tables import QuarantinedRequest

# Entries one bulk action takes; the rest wait for the next click (a web request must stay short).
BULK_LIMIT = 200
ACTIONS = ("replay", "replay_trusted", "discard")


def register(blueprint: Blueprint, console: Console) -> None:
    parts = console.parts

    def selection() -> QuarantineFilter:
        values = request.values
        return QuarantineFilter(
            include_resolved=params.flag(values, "all"),
            provider=params.text(values, "provider"),
            connection=params.text(values, "connection"),
            reason_code=params.text(values, "reason"),
            request_id=params.text(values, "request_id"),
        )

    @blueprint.get("/quarantine")
    def quarantine() -> Response:
        where = selection()
        tenants = console.operator().tenants
        entries = quarantine_entries(
            parts.db,
            tenants=tenants,
            where=where,
            before=params.position(request.args, "before"),
            limit=params.PAGE_SIZE,
        )
        return page(
            "quarantine.html",
            entries=entries,
            matching=count_quarantined(parts.db, tenants=tenants, where=where),
            next_before=entries[-1].id if len(entries) == params.PAGE_SIZE else None,
            bulk_limit=BULK_LIMIT,
        )

    @blueprint.get(f"/quarantine/<{params.ROW_ID}:entry_id>")
    def quarantine_page(entry_id: int) -> Response:
        tenants = console.operator().tenants
        entry = quarantine_entry(parts.db, entry_id, tenants=tenants)
        if entry is None:
            return error_page(404, "Not found")
        return page(
            "quarantine_entry.html",
            entry=entry,
            headers=shown_headers(entry.headers),
            body=body_view(entry.body, content_type(entry.headers)),
            body_kept=body_was_kept(entry),
            log_entry=log_entry_for_request_id(parts.db, entry.request_id, tenants=tenants),
        )

    @blueprint.get(f"/quarantine/<{params.ROW_ID}:entry_id>/body")
    def quarantine_body(entry_id: int) -> Response:
        entry = quarantine_entry(parts.db, entry_id, tenants=console.operator().tenants)
        if entry is None:
            return error_page(404, "Not found")
        return body_download(entry, f"quarantine-{entry_id}")

    @blueprint.post(f"/quarantine/<{params.ROW_ID}:entry_id>/<any(replay, replay_trusted, discard):action>")
    def act_on_entry(entry_id: int, action: str) -> Response:
        entry = quarantine_entry(parts.db, entry_id, tenants=console.operator().tenants)
        if entry is None:
            return error_page(404, "Not found")
        if not console.operator().is_admin:
            console.audit([console.action(action, "quarantine", str(entry_id), entry.tenant_id, "refused", "viewer")])
            return error_page(403, "Not allowed")
        refused = console.refusal(action, "quarantine", str(entry_id), entry.tenant_id)  # past the action limit
        if refused is not None:
            return refused
        [(done, message_id)] = _act(console, [entry], action)
        if message_id is not None:
            flash(f"Replayed entry {entry_id}: stored.", "ok")
            return redirect(url_for("console.message_page", message_id=message_id), 303)
        flash(f"Entry {entry_id}: {done.result}. {done.detail}", "ok" if done.result == "ok" else "error")
        return redirect(url_for("console.quarantine_page", entry_id=entry_id), 303)

    @blueprint.post("/quarantine/bulk")
    def act_on_selection() -> Response:
        action = params.choice(request.form, "action", ACTIONS)
        if action is None:
            raise params.BadParameter("action: use one of " + ", ".join(ACTIONS))
        tenants = console.operator().tenants
        if params.flag(request.form, "matching"):
            ids = quarantine_ids(parts.db, tenants=tenants, where=selection(), limit=BULK_LIMIT)
        else:
            ids = params.ids(request.form.getlist("ids"), limit=BULK_LIMIT)
        if not ids:
            flash("Nothing selected.", "error")
            return redirect(url_for("console.quarantine"), 303)
        if not console.operator().is_admin:
            console.audit([console.action(action, "quarantine", str(i), None, "refused", "viewer") for i in ids])
            return error_page(403, "Not allowed")
        refused = console.refusal(action, "quarantine", None, None)  # one click, however many entries
        if refused is not None:
            return refused
        # Read one at a time as they are acted on: 200 entries' bodies, each up to webhook_max_body_bytes,
        # are not held together.
        entries = (quarantine_entry(parts.db, entry_id, tenants=tenants) for entry_id in ids)
        done = _act(console, (entry for entry in entries if entry is not None), action)
        succeeded = sum(1 for action_done, _ in done if action_done.result == "ok")
        flash(
            f"{action.replace('_', ' ')}: {succeeded} of {len(ids)} done.", "ok" if succeeded == len(ids) else "error"
        )
        return redirect(url_for("console.quarantine"), 303)


def _act(console: Console, entries: Iterable[QuarantinedRequest], action: str) -> list[tuple[Action, str | None]]:
    """Replay or discard entries, auditing each: what was done, and the message a replay stored."""
    done: list[tuple[Action, str | None]] = []
    for entry in entries:
        target = str(entry.id)
        if entry.resolved_at is not None:
            detail = f"already {entry.resolution}"
            done.append((console.action(action, "quarantine", target, entry.tenant_id, "refused", detail), None))
        elif action == "discard":
            resolve_entry(console.parts.db, entry.id, "discarded")
            done.append((console.action(action, "quarantine", target, entry.tenant_id, "ok", "discarded"), None))
        else:
            done.append(_replay(console, entry, trust=action == "replay_trusted"))
    console.audit([action_done for action_done, _ in done])
    return done


def _replay(console: Console, entry: QuarantinedRequest, *, trust: bool) -> tuple[Action, str | None]:
    action = "replay_trusted" if trust else "replay"
    target = str(entry.id)
    if not body_was_kept(entry):
        detail = "Its body was not kept, so it cannot be replayed: " + entry.reason
        return console.action(action, "quarantine", target, entry.tenant_id, "refused", detail), None
    result = console.parts.replay(entry.id, trust=trust)
    if result is None:
        detail = "The entry or its connection no longer exists."
        return console.action(action, "quarantine", target, entry.tenant_id, "not_found", detail), None
    if result.reason_code == "tenant_changed":
        detail = f"Not replayed, {result.detail}. Nothing changed."
        return console.action(action, "quarantine", target, entry.tenant_id, "refused", detail), None
    if result.status != 200:
        detail = f"Still refused: {result.status} {result.reason_code}: {result.detail}"
        return console.action(action, "quarantine", target, entry.tenant_id, "failed", detail), None
    message_ids = list(result.store.message_ids) if result.store else []
    detail = f"stored as message {message_ids[0]}" if message_ids else "stored (it carried no message)"
    stored = console.action(action, "quarantine", target, entry.tenant_id, "ok", detail)
    return stored, (message_ids[0] if message_ids else None)
