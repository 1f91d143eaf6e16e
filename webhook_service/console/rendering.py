"""How console pages are answered: a template with the console's helpers, the error page, and the values
templates format (times, signed media URLs, page links)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode, urlsplit

from flask import Response, g, render_template, request, url_for

from webhook_service.media.links import MediaLinks
from webhook_service.providers.base import looks_secret

MESSAGES = {
    400: "The request could not be understood.",
    403: "Your role does not allow this: viewers can look; only admins replay, discard, retry, resend and re-enable.",
    404: "There is nothing here, or it belongs to a tenant you do not see.",
    405: "This address does not take that method.",
    429: "Too many actions in a short time (console.action_limit_per_operator). Nothing was done: wait a minute.",
}


# As the intake writes a redacted value.
REDACTED = "[redacted]"


def shown_headers(headers: list[list[str]]) -> list[tuple[str, str]]:
    """Headers as a page shows them: kept requests keep signatures (a replay checks them again), but no
    page shows one, nor anything else that looks like a credential."""
    return [(name, REDACTED if looks_secret(name) else value) for name, value in headers]


def content_type(headers: list[list[str]]) -> str:
    return next((value for name, value in headers if name.lower() == "content-type"), "")


def page(template: str, status: int = 200, **values: Any) -> Response:
    return Response(render_template(f"console/{template}", **values), status=status, mimetype="text/html")


def error_page(status: int, title: str, message: str | None = None) -> Response:
    return page("error.html", status, title=title, message=message or MESSAGES.get(status, ""))


def when(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if value else "—"


def age(moment: datetime | None) -> str | None:
    """How long ago `moment` was, in words a glance reads: 45 s, 12 min, 3 h 20 min."""
    if moment is None:
        return None
    seconds = max(0, int((datetime.now(UTC) - moment).total_seconds()))
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


def media_url(links: MediaLinks, attachment: Any) -> str | None:
    """A stored attachment's signed URL; its origin is allowed in this page's security policy."""
    url = links.attachment_url(attachment)
    if url:
        parts = urlsplit(url)
        if parts.scheme in ("http", "https") and parts.netloc:
            g.media_origins.add(f"{parts.scheme}://{parts.netloc}")
    return url


def page_url(endpoint: str, **changes: Any) -> str:
    """This page's URL with its query string changed (the filters kept, e.g. for the next page); a change
    to None removes that parameter."""
    values = {key: value for key, value in request.args.items() if value}
    for key, value in changes.items():
        if value is None:
            values.pop(key, None)
        else:
            values[key] = str(value)
    query = urlencode(values)
    return url_for(endpoint, **(request.view_args or {})) + (f"?{query}" if query else "")
