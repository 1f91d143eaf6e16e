"""The console's blueprint: sign-in, sign-out and the audit log, the rules every console request passes,
and the pages of the other modules (overview, request log, quarantine, messages, attachments, endpoints).

Every request: a POST must carry the form's CSRF token (400 and nothing changed otherwise); every page but
the sign-in needs a signed-in operator (the sign-in page otherwise); every answer carries a strict
Content-Security-Policy (no script at all; images and media only from this service and from the signed
URLs the page shows), is not cached and cannot be framed.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any
from urllib.parse import unquote, urlsplit

from flask import Blueprint, g, redirect, request, session, url_for
from flask_wtf.csrf import generate_csrf, validate_csrf
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response
from wtforms import ValidationError

from storage import StorageError
from webhook_service.config.derived_keys import derived_key
from webhook_service.console import (
    pages_attachments,
    pages_endpoints,
    pages_messages,
    pages_overview,
    pages_quarantine,
    pages_requests,
)
from webhook_service.console.access import ActionLimiter, Operators, SignInLimiter
from webhook_service.console.context import Console, ConsoleParts
from webhook_service.console.params import BadParameter, position
from webhook_service.console.rendering import MESSAGES, age, error_page, media_url, page, page_url, when
from webhook_service.console.session import ConsoleSessionInterface, in_console
from webhook_service.database.audit import Action, audit_entries
from webhook_service.database.outage import UNAVAILABLE_ERRORS
from webhook_service.media.scratch import ScratchSpaceUnavailable
from webhook_service.model.phone import mask
from webhook_service.observability.logs import log

logger = logging.getLogger("webhook_service.console")

_OUTAGES: tuple[type[Exception], ...] = (StorageError, ScratchSpaceUnavailable, *UNAVAILABLE_ERRORS)
# The largest request body the console reads: its forms hold a CSRF token, a few filters and at most 200
# ticked ids (some 10 KB). werkzeug reads a url-encoded form whole, whatever its size, and the app sets
# no limit of its own (each API sets its endpoints'): without this, anyone could have a web process
# read a form of gigabytes into memory at the sign-in page.
FORM_MAX_BYTES = 64 * 1024
_PUBLIC_ENDPOINTS = frozenset({"console.sign_in", "console.static"})
_CSRF_REFUSED = (
    "This form did not come from the console, or it has expired (its CSRF token is missing or not valid). "
    "Nothing was changed. Reload the page and try again."
)


def console_blueprint(parts: ConsoleParts, *, secret_key: bytes) -> Blueprint:
    settings = parts.settings
    blueprint = Blueprint(
        "console", __name__, url_prefix="/console", template_folder="templates", static_folder="static"
    )
    lifetime = timedelta(hours=settings.console.session_hours)
    console = Console(
        parts,
        Operators(settings.operators, derived_key(secret_key, "console-operator"), lifetime),
        ActionLimiter(settings.console, settings.redis_url, parts.db),
    )
    limiter = SignInLimiter(settings.console, settings.redis_url, parts.db)
    csrf_key = derived_key(secret_key, "console-csrf")
    secure = bool(settings.public_base_url and settings.public_base_url.startswith("https://"))

    @blueprint.record_once
    def _sessions(state: Any) -> None:
        # The one app-wide change: sessions, which only the console uses (other paths get none).
        state.app.session_interface = ConsoleSessionInterface(
            derived_key(secret_key, "console-session"), lifetime, secure=secure
        )

    @blueprint.before_request
    def _check_request() -> Response | None:
        g.media_origins = set()
        request.max_content_length = FORM_MAX_BYTES  # past it, reading the form is a 413
        if request.method == "POST":
            try:
                validate_csrf(
                    request.form.get("csrf_token"), secret_key=csrf_key, time_limit=int(lifetime.total_seconds())
                )
            except ValidationError:
                return error_page(400, "Form refused", _CSRF_REFUSED)
        if request.endpoint in _PUBLIC_ENDPOINTS or console.operators.signed_in() is not None:
            return None
        if request.method == "GET":
            return redirect(url_for("console.sign_in", next=request.full_path.removesuffix("?")), 303)
        return redirect(url_for("console.sign_in"), 303)

    # For every answer under /console, not only the blueprint's: a method no console route takes (PUT,
    # DELETE...) is answered by the app, outside the blueprint, and went without these headers.
    @blueprint.after_app_request
    def _security_headers(response: Response) -> Response:
        if not in_console(request):
            return response
        sources = " ".join(["'self'", *sorted(getattr(g, "media_origins", ()))])
        response.headers["Content-Security-Policy"] = (
            "default-src 'none'; script-src 'none'; style-src 'self'; "
            f"img-src {sources}; media-src {sources}; "
            "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
        )
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["Cache-Control"] = "no-store"
        return response

    @blueprint.context_processor
    def _helpers() -> dict[str, Any]:
        return {
            "csrf_token": lambda: generate_csrf(secret_key=csrf_key),
            "signed_in": console.operators.signed_in(),
            "mask": mask,
            "when": when,
            "age": age,
            "media_url": lambda attachment: media_url(parts.links, attachment),
            "page_url": page_url,
        }

    @blueprint.errorhandler(BadParameter)
    def _bad_parameter(error: BadParameter) -> Response:
        return error_page(400, "Bad request", str(error))

    @blueprint.errorhandler(HTTPException)
    def _http_error(error: HTTPException) -> Response:
        status = error.code or 500
        return error_page(status, error.name, MESSAGES.get(status, error.description))

    def _outage(error: Exception) -> Response:
        log(logger, "console_outage", logging.ERROR, error=type(error).__name__)
        response = error_page(
            503, "Temporarily unavailable", "The database or the blob store does not answer. Try again in a moment."
        )
        response.headers["Retry-After"] = "5"
        return response

    for outage in _OUTAGES:
        blueprint.register_error_handler(outage, _outage)

    @blueprint.route("/login", methods=["GET", "POST"])
    def sign_in() -> Response:
        next_page = _safe_next(request.values.get("next"))
        if request.method == "GET":
            if console.operators.signed_in() is not None:
                return redirect(next_page, 303)
            return page("sign_in.html", next_page=next_page)
        username = request.form.get("username", "")[:255]
        password = request.form.get("password", "")[:1024]
        address = request.remote_addr or "unknown"
        if not limiter.attempt(address, username):
            log(logger, "console_sign_in_limited", logging.WARNING, address=address)
            error = "Too many sign-in attempts. Wait a few minutes, then try again."
            return page("sign_in.html", 429, next_page=next_page, error=error)
        operator = console.operators.check_password(username, password) if username and password else None
        if operator is None:
            log(logger, "console_sign_in_failed", logging.WARNING, address=address)
            # The same answer whether the username exists or not.
            return page("sign_in.html", 401, next_page=next_page, error="Wrong username or password.")
        # Recorded first: no session begins that the audit log does not show.
        console.audit([Action(operator.username, "sign_in", "session", None, None, "ok", f"from {address}")])
        console.operators.start_session(operator)
        return redirect(next_page, 303)

    @blueprint.post("/logout")
    def sign_out() -> Response:
        signed_out = console.action("sign_out", "session", None, None, "ok")
        # Ended before it is recorded: an operator who signs out while the database does not answer (and
        # leaves the machine) must not stay signed in. The log line then stands for the audit row.
        session.clear()
        try:
            console.audit([signed_out])
        except UNAVAILABLE_ERRORS as error:
            log(
                logger,
                "console_sign_out_not_audited",
                logging.ERROR,
                operator=signed_out.actor,
                error=type(error).__name__,
            )
        return redirect(url_for("console.sign_in"), 303)

    @blueprint.get("/audit")
    def audit_log() -> Response:
        entries, next_before = audit_entries(
            parts.db, tenants=console.operator().tenants, before=position(request.args, "before")
        )
        return page("audit.html", entries=entries, next_before=next_before)

    @blueprint.route("/<path:anything>", methods=["GET", "POST"])
    def unknown_page(anything: str) -> Response:
        return error_page(404, "Not found")

    for pages in (pages_overview, pages_requests, pages_quarantine, pages_messages, pages_attachments, pages_endpoints):
        pages.register(blueprint, console)
    return blueprint


def _safe_next(value: str | None) -> str:
    """Where to go after signing in: a console page of this service, never another site, nor another page
    of this one through dot segments (browsers resolve `/console/../api` and `/console/%2e%2e/api` to
    `/api`); a line break or other control character, which no header may carry, goes to the overview."""
    default = url_for("console.overview")
    if not value or not value.startswith("/console") or "\\" in value or not value.isprintable():
        return default
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or any(segment in (".", "..") for segment in unquote(parts.path).split("/")):
        return default
    return request.script_root + value
