"""Attachments (/console/attachments): the failed and rejected ones grouped by reason, each group's
latest, and a retry of every attachment of a reason (the pipeline's retry, as `webhook-service
attachments retry --all-failed --reason`). Admins only; audited."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, request, url_for
from werkzeug.wrappers import Response

from webhook_service.console import params
from webhook_service.console.context import Console
from webhook_service.console.rendering import error_page, page
from webhook_service.media.attachments import PROBLEM_STATES, list_attachments, problem_groups, retryable

# Attachments one click retries; the rest wait for the next (the retry is one statement per batch).
RETRY_LIMIT = 1000


def register(blueprint: Blueprint, console: Console) -> None:
    parts = console.parts

    @blueprint.get("/attachments")
    def attachments() -> Response:
        tenants = console.operator().tenants
        reason = params.text(request.args, "reason", limit=64)
        status = params.choice(request.args, "status", PROBLEM_STATES)
        listed = list_attachments(
            parts.db, statuses=(status,) if status else PROBLEM_STATES, reason_code=reason, limit=100, tenants=tenants
        )
        return page(
            "attachments.html",
            groups=problem_groups(parts.db, tenants=tenants),
            listed=listed,
            reason=reason,
            status_filter=status,
        )

    @blueprint.post("/attachments/retry-reason")
    def retry_reason() -> Response:
        tenants = console.operator().tenants
        reason = params.text(request.form, "reason", limit=64)
        if reason is None:
            raise params.BadParameter("reason: name the reason code to retry")
        tenant_of = dict(retryable(parts.db, reason_code=reason, tenants=tenants)[:RETRY_LIMIT])
        if not console.operator().is_admin:
            console.audit([console.action("retry", "attachment", None, None, "refused", f"viewer; reason {reason}")])
            return error_page(403, "Not allowed")
        refused = console.refusal("retry", "attachment", None, None)  # past the action limit
        if refused is not None:
            return refused
        reset = parts.retry(list(tenant_of)) if tenant_of else []
        console.audit(
            [console.action("retry", "attachment", i, tenant_of[i], "ok", f"reason {reason}") for i in reset]
            or [console.action("retry", "attachment", None, None, "refused", f"nothing to retry for {reason}")]
        )
        flash(f"{len(reset)} attachments with reason {reason} queued for another attempt.", "ok")
        return redirect(url_for("console.attachments"), 303)
